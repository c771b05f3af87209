#pragma once
// Every policy's header; MOESIM_POLICY_INFOS is the registry's order (the order
// `moesim policies` prints).
#include "policies/topk.hpp"
#include "policies/noisy_topk.hpp"
#include "policies/switch.hpp"
#include "policies/rdesi.hpp"
#include "policies/loss_free.hpp"
#include "policies/expert_choice.hpp"
#include "policies/sinkhorn.hpp"
#include "policies/balanced.hpp"
#include "policies/hash.hpp"
#include "policies/random.hpp"

#define MOESIM_POLICY_INFOS                                                                  \
  topk_info(), noisy_topk_info(), switch_info(), rdesi_info(), loss_free_info(), expert_choice_info(), \
      sinkhorn_info(), balanced_info(), hash_info(), random_info()
