#pragma once
// Precompiled for every backend translation unit (see CMakeLists.txt).
#include <torch/torch.h>
