// Argument checks shared by the CPU kernels and their CUDA twins (kernels.h,
// cuda/cuda_backend.h): one implementation, so both return the same status codes and words.
#pragma once
#include <cstdint>

#include "memq/kernels.h"
#include "memq/status.h"

namespace memq {

// keys.n >= 0, keys.d >= 1, keys.keys present when n > 0, cached norms finite and >= 0 for
// alive rows.
Status validate_key_view(const KeyView& keys);

// The checks of kernel_weighted_value, in its order (rows in [-1, n_rows), kernels finite and
// >= 0, values finite, void case finite with void_weight >= 0, outputs present).
Status validate_kernel_weighted_value_args(const int64_t* rows, const float* kernel, const float* row_values,
                                           int64_t n_rows, int64_t b, int64_t m, float void_weight,
                                           float void_value, const float* value_out);

// The checks of kl_improve (shapes, alpha finite >= 0, ragged lengths in [0, cols], log_prior
// finite or -inf, q finite, outputs present).
Status validate_kl_improve_args(const float* log_prior, const float* q, int64_t rows, int64_t cols,
                                const int32_t* row_lengths, float alpha, const float* policy_out,
                                const float* value_out);

// A search's queries (b rows of d floats): every value finite, every row's squared norm (in
// double) at most limits::kMaxSquaredNorm. The one check of query values on the way in from
// JavaScript (Store::bind_search runs it on the caller's thread, before any job starts, whatever
// the backend and whether or not the memory is empty); the messages reach JS unchanged.
Status validate_queries(const float* queries, int64_t b, int64_t d);

}  // namespace memq
