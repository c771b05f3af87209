#pragma once
// Balanced assignment by auction (Bertsekas; the solver of fairseq's BASE layers
// is an auction too): T tokens, E experts with C = T/E seats each, maximising
// sum_t v[t][a(t)]. Every seat has a price; an unseated token bids for the seat
// with the largest profit v - price, raising its price by the margin over its
// second choice plus eps and evicting the holder. Epsilon scaling (eps * 8^j,
// coarse first) settles prices cheaply; the last phase leaves the total within
// T * eps of the optimum (eps-complementary slackness).
#include <cstdint>
#include <vector>

namespace moesim {

class AuctionAssigner {
 public:
  // value: T x E row-major, scaled to [0, 1], -inf = not allowed; T == E * cap.
  // owner[t] receives token t's expert.
  void assign(double* value, int T, int E, int cap, double eps, std::int32_t* owner);

 private:
  struct Copy {  // one of an expert's seats
    double price;
    std::int32_t holder;  // token, or -1 while free
  };
  std::vector<Copy> seat_;           // experts x cap: one min-heap by price per expert
  std::vector<double> min_price_;    // per expert: its cheapest seat, kept dense for the bid scan
  std::vector<double> bid_;          // per expert: a token's profit, scratch
  std::vector<std::int32_t> owner_;  // per token: expert won, -1 if none
  std::vector<std::int32_t> queue_;  // ring buffer of tokens without a seat
};

}  // namespace moesim
