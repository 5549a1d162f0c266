// Limits on caller-controlled sizes and parameters, in one place. Every allocation whose size
// comes from a caller is checked against one of these BEFORE it is made, and refused with a
// RangeError (kOutOfRange) that names the argument and the limit, so that no input can make the
// process allocate without bound (or abort in the allocator). lib/retrieval.ts (LIMITS) checks
// the same numbers first; backendInfo().limits reports these so a test can hold the two equal.
// README.md ("Limits" in the MemoryIndex section) documents them.
#pragma once
#include <cstdint>

namespace memq {
namespace limits {

// Elements of any one result array a call allocates: search/estimate's b*m (ids, kernel, dist2
// and the internal rows), klImprove's rows*cols policy and its rows values, getKeys' ids*dim.
// 2^28 float32 = 1 GiB per array.
constexpr int64_t kMaxResultElements = int64_t{1} << 28;
constexpr const char* kMaxResultElementsText = "2^28 = 268435456";

// m (results per query) of search/estimate.
constexpr int64_t kMaxM = int64_t{1} << 24;

// Kernel parameters for which every kernel value stays finite (and > 0 where it should) in
// float32: cosine k = exp(kappa cos) <= exp(88) ~ 1.65e38 < FLT_MAX ~ 3.40e38; inverse
// k = 1 / (dist2 + delta) <= 1 / delta <= 1e30. Gaussian k = exp(-d2 / 2h^2) is in [0, 1]
// for every finite h > 0 (evaluated in double).
constexpr float kMaxKappa = 88.0f;
constexpr float kMinDelta = 1e-30f;

// Keys (store rows) and queries: squared norm, computed in double, at most 2^125 (~4.25e37,
// FLT_MAX / 8). Then every squared distance |q - k|^2 <= (|q| + |k|)^2 <= 2^127 and the float32
// GEMM expansion |q|^2 + |k|^2 - 2 q.k stay finite, so a filled result slot never reads
// dist2 = +inf (the empty-slot marker), and the cached float32 norms are finite.
constexpr double kMaxSquaredNorm = 42535295865117307932921825928971026432.0;  // 2^125
constexpr const char* kMaxSquaredNormText = "2^125 (about 4.25e37)";

// LLM engine (native/core/llm): decoder layers of a config, parameters of a model or of a LoRA
// adapter (float32; 2^32 floats = 16 GiB), and the activation floats one forward pass may
// allocate (a batch needing more must be split).
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxParams = int64_t{1} << 32;
constexpr int64_t kMaxActivationFloats = int64_t{1} << 32;
constexpr int64_t kMaxLoraRank = 65536;

}  // namespace limits
}  // namespace memq
