#pragma once
// Row-major float matrices: the layout the policy contract's buffers use
// (tokens x experts logits, tokens x dim gate inputs, experts x dim weights).
#include <Eigen/Core>

namespace moesim {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace moesim
