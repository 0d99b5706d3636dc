#include "flash_kda/flash_kda.h"

namespace flash_kda {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
    default: return "an unsupported dtype";
  }
}

const char* gate_mode_name(GateMode mode) {
  switch (mode) {
    case GateMode::kLowerBound: return "lower_bound";
    case GateMode::kSoftplus: return "softplus";
    case GateMode::kPrecomputed: return "precomputed";
    default: return "an unknown gate mode";
  }
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kUInt8:
    case DType::kBool: return 1;
    case DType::kBFloat16:
    case DType::kFloat16: return 2;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64: return 8;
    default: return 0;
  }
}

int64_t TensorRef::numel() const {
  if (ndim < 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool TensorRef::is_contiguous() const {
  int64_t expected = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expected) return numel() == 0;
    expected *= shape[i];
  }
  return true;
}

TensorRef make_tensor(void* data, DType dtype, std::initializer_list<int64_t> shape,
                      DeviceType device, int device_id) {
  TensorRef t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) t.shape[i++] = d;
  int64_t stride = 1;
  for (int j = t.ndim - 1; j >= 0; --j) {
    t.strides[j] = stride;
    stride *= t.shape[j];
  }
  t.device = device;
  t.device_id = device_id;
  return t;
}

}  // namespace flash_kda
