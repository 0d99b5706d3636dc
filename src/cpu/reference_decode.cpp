// The float64 oracle of `decode`, built on the oracle of `fwd`: a decode step
// of sequence n is a prefill of its few tokens with initial_state =
// final_state = its pool slot. So both entry points share one implementation
// of the math (reference.cpp), and this file is only the index plumbing.
#include "cpu/reference_decode.h"

#include "cpu/bf16.h"
#include "cpu/cpu_backend.h"

namespace flash_kda::cpu {
namespace {

// A contiguous view of `rows` rows starting at row `first` of tensor `t`
// (rows along dimension `dim`, with everything before it of size 1 or folded).
TensorRef rows_view(const TensorRef& t, int dim, int64_t first, int64_t rows) {
  TensorRef v = t;
  int64_t row_elems = 1;
  for (int i = dim + 1; i < t.ndim; ++i) row_elems *= t.shape[i];
  v.data = static_cast<char*>(t.data) + first * row_elems * static_cast<int64_t>(dtype_size(t.dtype));
  for (int i = 0; i < dim; ++i) v.shape[i] = 1;
  v.shape[dim] = rows;
  int64_t stride = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    v.strides[i] = stride;
    stride *= v.shape[i];
  }
  return v;
}

}  // namespace

void reference_decode(const DecodeParams& p, const DecodeShape& shape) {
  const int64_t H = shape.heads;
  for (int64_t n = 0; n < shape.num_sequences; ++n) {
    // Tokens n*t .. n*t + t of the flattened [N*t] axis, or cu_seqlens[n] .. cu_seqlens[n+1].
    const int64_t begin = shape.varlen ? load_index(p.cu_seqlens, n) : n * shape.tokens;
    const int64_t end = shape.varlen ? load_index(p.cu_seqlens, n + 1) : begin + shape.tokens;
    const int64_t slot = load_index(p.state_indices, n);
    if (slot < 0) {  // padding row: zero outputs, no slot
      const TensorRef out = rows_view(p.out, 1, begin, end - begin);
      for (int64_t i = 0; i < out.numel(); ++i) store_element(out, i, 0.0);
      continue;
    }
    // The q/k/v/g/beta/out tensors are [B, T, ...] with B * T tokens in row
    // order; view tokens [begin, end) as one row [1, end - begin, ...].
    FwdParams f;
    f.q = rows_view(p.q, 1, begin, end - begin);
    f.k = rows_view(p.k, 1, begin, end - begin);
    f.v = rows_view(p.v, 1, begin, end - begin);
    f.g = rows_view(p.g, 1, begin, end - begin);
    f.beta = rows_view(p.beta, 1, begin, end - begin);
    f.out = rows_view(p.out, 1, begin, end - begin);
    f.scale = p.scale;
    f.A_log = p.A_log;
    f.dt_bias = p.dt_bias;
    f.lower_bound = p.lower_bound;
    f.initial_state = rows_view(p.state, 0, slot, 1);  // read whole before written
    f.final_state = f.initial_state;
    FwdShape fs;
    fs.batch = 1;
    fs.tokens = end - begin;
    fs.heads = H;
    fs.num_sequences = 1;
    reference_forward(f, fs);
  }
}

}  // namespace flash_kda::cpu
