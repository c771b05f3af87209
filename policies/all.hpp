#pragma once
// Every policy's header; MOESIM_POLICY_INFOS is the registry's order (the order
// `moesim policies` prints).
#include "policies/topk.hpp"
#include "policies/noisy_topk.hpp"
#include "policies/switch.hpp"
#include "policies/rdesi.hpp"
#include "policies/loss_free.hpp"

#define MOESIM_POLICY_INFOS topk_info(), noisy_topk_info(), switch_info(), rdesi_info(), loss_free_info()
