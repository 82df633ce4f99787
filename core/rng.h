// A small portable RNG: splitmix64 + Box-Muller. std::normal_distribution differs
// between standard libraries; checkpoints and layout tests need the same numbers on
// every build, so we own the generator. Its whole state is one integer.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace gpt {

inline uint64_t hash_string(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A standard normal that is a pure function of (key, counter): element i of a tensor
// gets counter i, so any slice of the tensor can be drawn on its own and matches the
// whole. Box-Muller on two hashed 53-bit uniforms, u1 in (0, 1] so the log is finite.
inline float counter_normal(uint64_t key, uint64_t counter) {
  const uint64_t base = splitmix64(key) ^ (counter * 0xd1b54a32d192ed03ull);
  const double u1 = double((splitmix64(base) >> 11) + 1) * (1.0 / 9007199254740992.0);
  const double u2 = double(splitmix64(base ^ 0x5851f42d4c957f2dull) >> 11) * (1.0 / 9007199254740992.0);
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 24 random bits (exactly representable in float).
  float uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }
  float normal() {
    // Box-Muller on doubles; u1 in (0, 1] so the log is finite.
    double u1 = (double((next_u64() >> 11) + 1)) * (1.0 / 9007199254740992.0);
    double u2 = double(next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

}  // namespace gpt
