#pragma once
// Every policy's header; MOESIM_POLICY_INFOS is the registry's order (the order
// `moesim policies` prints).
#include "policies/topk.hpp"

#define MOESIM_POLICY_INFOS topk_info()
