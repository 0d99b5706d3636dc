// flash_kda._C: the nanobind extension behind the Python package `flash_kda`.
//
// Every tensor argument arrives as any object that speaks DLPack (PyTorch,
// NumPy, CuPy, JAX, ...) or None, and is described to the C++ API as a
// non-owning flash_kda::TensorRef. Nothing is copied or converted: a tensor of
// the wrong dtype, layout or device is refused by flash_kda::validate_fwd with
// an error that names the argument.
//
// Two ways in, same result:
//  * the DLPack C exchange API (`type(t).__dlpack_c_exchange_api__`, DLPack
//    >= 1.2; PyTorch >= 2.9 has it): a C function call per tensor, no Python
//    call, no capsule. The same table gives the framework's current stream and
//    allocates the workspace with the framework's allocator (PyTorch: the
//    caching allocator, on the current stream).
//  * nanobind's ndarray import (`__dlpack__` / buffer protocol) for the rest.
//
// NumPy cannot export ml_dtypes.bfloat16 through DLPack, so the Python layer
// passes such arrays as `arr.view(np.uint16)` and lists their argument names
// in `bf16`; those uint16 tensors are read as bfloat16 here.
//
// flash_kda::Error becomes TypeError (ErrorKind::kType), ValueError (kValue)
// or RuntimeError (others), with the message unchanged and the offending
// argument's name in the exception's `argument` attribute.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "flash_kda/flash_kda.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// ---- arguments ---------------------------------------------------------------------

// Tensor arguments of fwd, in signature order, with the rank each must have
// (used only to word the error for a rank TensorRef cannot hold).
struct ArgInfo {
  const char* name;
  int rank;
  bool output;
  bool optional;
};
constexpr ArgInfo kArgs[] = {
    {"q", 4, false, false},           {"k", 4, false, false},
    {"v", 4, false, false},           {"g", 4, false, false},
    {"beta", 3, false, false},        {"out", 4, true, false},
    {"A_log", 1, false, false},       {"dt_bias", 2, false, false},
    {"initial_state", 4, false, true}, {"final_state", 4, true, true},
    {"cu_seqlens", 1, false, true},
    {"state_indices", 1, false, true}, {"final_state_indices", 1, false, true},
    {"zero_start", 1, false, true},    {"checkpoints", 4, true, true},
    {"checkpoint_offsets", 1, false, true},
};
enum ArgIndex {
  kQ, kK, kV, kG, kBeta, kOut, kALog, kDtBias, kInit, kFinal, kCu,
  kStateIndices, kFinalStateIndices, kZeroStart, kCheckpoints, kCheckpointOffsets, kNumArgs
};

// ---- errors ------------------------------------------------------------------------

// Raises a Python exception of type `type` carrying `argument` as an attribute.
[[noreturn]] void raise_with_argument(PyObject* type, const std::string& argument,
                                      const std::string& message) {
  nb::object exc = nb::handle(type)(nb::str(message.data(), message.size()));
  if (PyObject_SetAttrString(exc.ptr(), "argument",
                             nb::str(argument.data(), argument.size()).ptr()) != 0)
    PyErr_Clear();
  PyErr_SetObject(type, exc.ptr());
  throw nb::python_error();
}

[[noreturn]] void raise_error(const flash_kda::Error& e) {
  PyObject* type = PyExc_RuntimeError;
  if (e.kind() == flash_kda::ErrorKind::kType) type = PyExc_TypeError;
  else if (e.kind() == flash_kda::ErrorKind::kValue) type = PyExc_ValueError;
  raise_with_argument(type, e.argument(), e.what());
}

std::string py_type_name(nb::handle h) {
  nb::handle tp = reinterpret_cast<PyObject*>(Py_TYPE(h.ptr()));
  nb::object mod = nb::getattr(tp, "__module__", nb::none());
  std::string name = nb::cast<std::string>(nb::getattr(tp, "__qualname__", nb::str("?")));
  if (nb::isinstance<nb::str>(mod)) {
    std::string m = nb::cast<std::string>(mod);
    if (m != "builtins") name = m + "." + name;
  }
  return name;
}

[[noreturn]] void raise_not_a_tensor(nb::handle obj, const std::string& name, bool optional) {
  raise_with_argument(PyExc_TypeError, name,
                      name + ": expected a tensor supporting DLPack (torch.Tensor, numpy.ndarray, "
                             "cupy.ndarray, ...)" +
                          (optional ? std::string(" or None") : std::string()) + ", got " +
                          py_type_name(obj));
}

// ---- DLPack ------------------------------------------------------------------------

// DLPack device types (dlpack.h): kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3
// (pinned host memory: the CPU may read it), kDLCUDAManaged = 13.
enum : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };

const char* dl_device_name(int type) {
  switch (type) {
    case 4: return "OpenCL";
    case 7: return "Vulkan";
    case 8: return "Metal";
    case 9: return "VPI";
    case 10: return "ROCm";
    case 11: return "ROCm host";
    case 12: return "ext_dev";
    case 14: return "oneAPI";
    case 15: return "WebGPU";
    case 16: return "Hexagon";
    default: return "an unknown device";
  }
}

flash_kda::DType to_dtype(nb::dlpack::dtype dt, bool uint16_is_bf16) {
  using Code = nb::dlpack::dtype_code;
  if (dt.lanes != 1) return flash_kda::DType::kOther;
  const auto code = static_cast<Code>(dt.code);
  if (code == Code::Bfloat && dt.bits == 16) return flash_kda::DType::kBFloat16;
  if (code == Code::UInt && dt.bits == 16 && uint16_is_bf16) return flash_kda::DType::kBFloat16;
  if (code == Code::Float) {
    if (dt.bits == 16) return flash_kda::DType::kFloat16;
    if (dt.bits == 32) return flash_kda::DType::kFloat32;
    if (dt.bits == 64) return flash_kda::DType::kFloat64;
  }
  if (code == Code::Bool && dt.bits == 8) return flash_kda::DType::kBool;
  if (code == Code::UInt && dt.bits == 8) return flash_kda::DType::kUInt8;
  if (code == Code::Int) {
    if (dt.bits == 32) return flash_kda::DType::kInt32;
    if (dt.bits == 64) return flash_kda::DType::kInt64;
  }
  return flash_kda::DType::kOther;
}

// Fills `ref` from the fields of a DLTensor (`strides` may be null: row-major).
void fill_ref(void* data, uint64_t byte_offset, int ndim, const int64_t* shape,
              const int64_t* strides, nb::dlpack::dtype dtype, int32_t dev_type, int32_t dev_id,
              const ArgInfo& info, bool uint16_is_bf16, flash_kda::TensorRef& ref) {
  const std::string name = info.name;
  if (ndim > flash_kda::TensorRef::kMaxDims || ndim < 0)
    raise_with_argument(PyExc_ValueError, name,
                        name + ": expected a " + std::to_string(info.rank) + "-D tensor, got " +
                            std::to_string(ndim) + "-D");
  ref.ndim = ndim;
  ref.data = data == nullptr ? nullptr : static_cast<char*>(data) + byte_offset;
  ref.dtype = to_dtype(dtype, uint16_is_bf16);
  int64_t row_major = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    ref.shape[i] = shape[i];
    ref.strides[i] = strides ? strides[i] : row_major;
    row_major *= shape[i];
  }
  if (dev_type == kDLCPU || dev_type == kDLCUDAHost) {
    ref.device = flash_kda::DeviceType::kCPU;
    ref.device_id = 0;
  } else if (dev_type == kDLCUDA || dev_type == kDLCUDAManaged) {
    ref.device = flash_kda::DeviceType::kCUDA;
    ref.device_id = dev_id;
  } else {
    raise_with_argument(PyExc_ValueError, name,
                        name + ": tensors on " + dl_device_name(dev_type) +
                            " are not supported (expected a CPU or CUDA tensor)");
  }
}

template <typename Array>
void fill_ref(const Array& a, const ArgInfo& info, bool uint16_is_bf16, flash_kda::TensorRef& ref) {
  fill_ref(a.data_handle(), a.byte_offset(), static_cast<int>(a.ndim()), a.shape_ptr(),
           a.stride_ptr(), a.dtype(), a.device_type(), a.device_id(), info, uint16_is_bf16, ref);
}

// ---- the DLPack C exchange API (dlpack.h >= 1.2, `__dlpack_c_exchange_api__`) --------
// Layout-compatible mirrors of the dlpack.h declarations.
namespace xapi {
struct Version {
  uint32_t major;
  uint32_t minor;
};
struct ManagedTensorVersioned {
  Version version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  uint64_t flags;
  nb::dlpack::dltensor dl_tensor;
};
using SetErrorFn = void (*)(void* error_ctx, const char* kind, const char* message);
struct Header {
  Version version;
  Header* prev_api;
};
struct Api {
  Header header;
  int (*managed_tensor_allocator)(nb::dlpack::dltensor* prototype, ManagedTensorVersioned** out,
                                  void* error_ctx, SetErrorFn set_error);
  int (*managed_tensor_from_py_object_no_sync)(void* py_object, ManagedTensorVersioned** out);
  int (*managed_tensor_to_py_object_no_sync)(ManagedTensorVersioned* tensor, void** out);
  int (*dltensor_from_py_object_no_sync)(void* py_object, nb::dlpack::dltensor* out);
  int (*current_work_stream)(int32_t device_type, int32_t device_id, void** out_stream);
};

// The exchange table of a tensor type (cached; null when the type has none or
// an incompatible version). Called with the GIL held.
const Api* lookup(PyTypeObject* type) {
  static std::unordered_map<PyTypeObject*, const Api*> cache;
  auto it = cache.find(type);
  if (it != cache.end()) return it->second;
  const Api* api = nullptr;
  PyObject* capsule = PyObject_GetAttrString(reinterpret_cast<PyObject*>(type),
                                             "__dlpack_c_exchange_api__");
  if (capsule == nullptr) {
    PyErr_Clear();
  } else {
    auto* header = static_cast<Header*>(PyCapsule_GetPointer(capsule, "dlpack_exchange_api"));
    if (header == nullptr) PyErr_Clear();
    // Walk to the newest table of major version 1 with every function we use
    // (the table of DLPack 1.2 and later).
    while (header != nullptr && header->version.major > 1) header = header->prev_api;
    if (header != nullptr && header->version.major == 1 && header->version.minor >= 2) {
      const auto* candidate = reinterpret_cast<const Api*>(header);
      if (candidate->dltensor_from_py_object_no_sync != nullptr) api = candidate;
    }
    Py_DECREF(capsule);
  }
  Py_INCREF(type);  // keep the type (and its table) alive: the cache holds it
  cache.emplace(type, api);
  return api;
}

void set_error(void* ctx, const char* kind, const char* message) {
  auto* out = static_cast<std::string*>(ctx);
  *out = std::string(kind ? kind : "Error") + ": " + (message ? message : "");
}
}  // namespace xapi

// The imported tensors, kept alive for the duration of one call.
struct Holder {
  nb::ndarray<nb::ro> inputs[kNumArgs];
  nb::ndarray<> outputs[kNumArgs];
  const xapi::Api* api[kNumArgs] = {};  // exchange table of each argument, if any
  nb::ndarray<> workspace;
  nb::object workspace_obj;
  xapi::ManagedTensorVersioned* workspace_managed = nullptr;

  Holder() = default;
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;
  ~Holder() {
    if (workspace_managed != nullptr && workspace_managed->deleter != nullptr)
      workspace_managed->deleter(workspace_managed);
  }
};

// Converts `obj` (a DLPack tensor or None) for argument `info`, kept in slot
// `idx` of `hold` (fwd and decode have their own argument tables).
flash_kda::TensorRef convert_tensor(nb::handle obj, const ArgInfo& info, int idx, bool uint16_is_bf16,
                                    Holder& hold) {
  flash_kda::TensorRef ref;  // ndim = -1: not given
  if (obj.is_none()) return ref;

  if (const xapi::Api* api = xapi::lookup(Py_TYPE(obj.ptr()))) {
    nb::dlpack::dltensor t;
    if (api->dltensor_from_py_object_no_sync(obj.ptr(), &t) == 0) {
      // Valid while `obj` lives (the caller holds it); shape/strides are copied now.
      hold.api[idx] = api;
      fill_ref(t.data, t.byte_offset, t.ndim, t.shape, t.strides, t.dtype,
               t.device.device_type, t.device.device_id, info, uint16_is_bf16, ref);
      return ref;
    }
    PyErr_Clear();  // not describable that way: try the generic import below
  }

  if (info.output) {
    if (nb::try_cast(obj, hold.outputs[idx], /*convert=*/false)) {
      fill_ref(hold.outputs[idx], info, uint16_is_bf16, ref);
      return ref;
    }
    // Distinguish "read-only" from "not a tensor at all".
    nb::ndarray<nb::ro> ro;
    if (nb::try_cast(obj, ro, false))
      raise_with_argument(PyExc_ValueError, info.name,
                          std::string(info.name) +
                              ": is read-only; expected a writable tensor (written in place)");
    raise_not_a_tensor(obj, info.name, info.optional);
  }
  if (!nb::try_cast(obj, hold.inputs[idx], /*convert=*/false))
    raise_not_a_tensor(obj, info.name, info.optional);
  fill_ref(hold.inputs[idx], info, uint16_is_bf16, ref);
  return ref;
}

flash_kda::TensorRef convert_arg(nb::handle obj, int idx, bool uint16_is_bf16, Holder& hold) {
  return convert_tensor(obj, kArgs[idx], idx, uint16_is_bf16, hold);
}

// Bit i set when table[i] is named in `names` (arguments passed as uint16 views of bf16).
uint32_t bf16_mask(const std::vector<std::string>& names, const ArgInfo* table, int count) {
  uint32_t mask = 0;
  for (const std::string& n : names) {
    bool found = false;
    for (int i = 0; i < count; ++i)
      if (n == table[i].name) {
        mask |= 1u << i;
        found = true;
      }
    if (!found) throw nb::value_error(("bf16: unknown argument name '" + n + "'").c_str());
  }
  return mask;
}

#define FLASH_KDA_TENSOR_ARGS                                                              \
  nb::handle q, nb::handle k, nb::handle v, nb::handle g, nb::handle beta, double scale,   \
      nb::handle out, nb::handle A_log, nb::handle dt_bias, double lower_bound,            \
      nb::handle initial_state, nb::handle final_state, nb::handle cu_seqlens,             \
      nb::handle state_indices, nb::handle final_state_indices, nb::handle zero_start,     \
      nb::handle checkpoints, nb::handle checkpoint_offsets, int64_t checkpoint_interval

#define FLASH_KDA_PASS_ARGS                                                                \
  q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, initial_state, final_state,   \
      cu_seqlens, state_indices, final_state_indices, zero_start, checkpoints,             \
      checkpoint_offsets, checkpoint_interval

flash_kda::FwdParams make_params(FLASH_KDA_TENSOR_ARGS, const std::vector<std::string>& bf16,
                                 int gate_mode, Holder& hold) {
  const uint32_t mask = bf16.empty() ? 0u : bf16_mask(bf16, kArgs, kNumArgs);
  auto conv = [&](nb::handle obj, int idx) {
    return convert_arg(obj, idx, (mask >> idx) & 1u, hold);
  };
  flash_kda::FwdParams p;
  p.q = conv(q, kQ);
  p.k = conv(k, kK);
  p.v = conv(v, kV);
  p.g = conv(g, kG);
  p.beta = conv(beta, kBeta);
  p.scale = scale;
  p.out = conv(out, kOut);
  p.A_log = conv(A_log, kALog);
  p.dt_bias = conv(dt_bias, kDtBias);
  p.lower_bound = lower_bound;
  p.gate_mode = static_cast<flash_kda::GateMode>(gate_mode);  // checked by the validator
  p.initial_state = conv(initial_state, kInit);
  p.final_state = conv(final_state, kFinal);
  p.cu_seqlens = conv(cu_seqlens, kCu);
  p.state_indices = conv(state_indices, kStateIndices);
  p.final_state_indices = conv(final_state_indices, kFinalStateIndices);
  p.zero_start = conv(zero_start, kZeroStart);
  p.checkpoints = conv(checkpoints, kCheckpoints);
  p.checkpoint_offsets = conv(checkpoint_offsets, kCheckpointOffsets);
  p.checkpoint_interval = checkpoint_interval;
  return p;
}

// ---- entry points --------------------------------------------------------------------

size_t py_workspace_size(FLASH_KDA_TENSOR_ARGS, const std::vector<std::string>& bf16, int gate_mode) {
  Holder hold;
  const flash_kda::FwdParams p = make_params(FLASH_KDA_PASS_ARGS, bf16, gate_mode, hold);
  try {
    return flash_kda::fwd_workspace_size(p);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

// Takes a user workspace (tensor) into `hold`; returns its pointer and size.
void use_workspace(nb::handle ws, const flash_kda::TensorRef& q, Holder& hold, void*& ptr,
                   size_t& bytes) {
  if (!nb::try_cast(ws, hold.workspace, /*convert=*/false))
    raise_with_argument(PyExc_TypeError, "workspace",
                        "workspace: expected a writable tensor supporting DLPack (a uint8 buffer "
                        "on q's device), a callable nbytes -> tensor, or None, got " +
                            py_type_name(ws));
  static constexpr ArgInfo kWorkspace = {"workspace", 1, true, true};
  flash_kda::TensorRef w;
  fill_ref(hold.workspace, kWorkspace, false, w);
  if (w.device != q.device || w.device_id != q.device_id)
    raise_with_argument(PyExc_ValueError, "workspace",
                        "workspace: expected a buffer on the same device as q");
  if (!w.is_contiguous())
    raise_with_argument(PyExc_ValueError, "workspace", "workspace: expected a contiguous buffer");
  ptr = w.data;
  bytes = hold.workspace.nbytes();
}

// The stream of a call: given, else the current stream of q's framework
// (exchange API), else the default stream.
cudaStream_t resolve_stream(nb::handle stream, const flash_kda::TensorRef& q, const xapi::Api* api) {
  if (!stream.is_none()) return reinterpret_cast<cudaStream_t>(nb::cast<uintptr_t>(stream));
  if (q.present() && q.device == flash_kda::DeviceType::kCUDA && api != nullptr &&
      api->current_work_stream != nullptr) {
    void* s = nullptr;
    if (api->current_work_stream(kDLCUDA, q.device_id, &s) != 0) throw nb::python_error();
    return static_cast<cudaStream_t>(s);
  }
  return nullptr;
}

// The workspace of a CUDA call: a given tensor, made by a given allocator
// (nbytes -> tensor), or made by q's framework through the exchange API.
void acquire_workspace(nb::handle ws, size_t needed, const flash_kda::TensorRef& q,
                       const xapi::Api* api, Holder& hold, void*& ptr, size_t& bytes) {
  const bool is_allocator = !ws.is_none() && PyCallable_Check(ws.ptr());
  if (!ws.is_none() && !is_allocator) {
    use_workspace(ws, q, hold, ptr, bytes);
    return;
  }
  if (needed == 0) return;
  if (is_allocator) {
    hold.workspace_obj = ws(needed);
    use_workspace(hold.workspace_obj, q, hold, ptr, bytes);
    return;
  }
  if (api == nullptr || api->managed_tensor_allocator == nullptr) return;  // fwd / decode report the missing workspace
  int64_t shape[1] = {static_cast<int64_t>(needed)};
  nb::dlpack::dltensor proto;
  proto.ndim = 1;
  proto.shape = shape;
  proto.dtype = nb::dlpack::dtype{static_cast<uint8_t>(nb::dlpack::dtype_code::UInt), 8, 1};
  proto.device = nb::dlpack::device{kDLCUDA, q.device_id};
  std::string error;
  if (api->managed_tensor_allocator(&proto, &hold.workspace_managed, &error, &xapi::set_error) != 0 ||
      hold.workspace_managed == nullptr) {
    hold.workspace_managed = nullptr;
    if (PyErr_Occurred()) throw nb::python_error();
    raise_with_argument(PyExc_RuntimeError, "workspace",
                        "workspace: could not allocate " + std::to_string(needed) + " bytes: " + error);
  }
  const nb::dlpack::dltensor& t = hold.workspace_managed->dl_tensor;
  ptr = static_cast<char*>(t.data) + t.byte_offset;
  bytes = needed;
}

void py_fwd(FLASH_KDA_TENSOR_ARGS, nb::handle stream, nb::handle workspace,
            const std::vector<std::string>& bf16, int gate_mode) {
  Holder hold;
  const flash_kda::FwdParams p = make_params(FLASH_KDA_PASS_ARGS, bf16, gate_mode, hold);
  const xapi::Api* api = hold.api[kQ];
  void* ws_ptr = nullptr;
  size_t ws_bytes = 0;
  try {
    const cudaStream_t cuda_stream = resolve_stream(stream, p.q, api);
    if (p.q.present() && p.q.device == flash_kda::DeviceType::kCUDA)
      acquire_workspace(workspace, flash_kda::fwd_workspace_size(p), p.q, api, hold, ws_ptr, ws_bytes);
    nb::gil_scoped_release release;
    flash_kda::fwd(p, ws_ptr, ws_bytes, cuda_stream);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

void py_reference_fwd(FLASH_KDA_TENSOR_ARGS, const std::vector<std::string>& bf16, int gate_mode) {
  Holder hold;
  const flash_kda::FwdParams p = make_params(FLASH_KDA_PASS_ARGS, bf16, gate_mode, hold);
  try {
    nb::gil_scoped_release release;
    flash_kda::reference_fwd(p);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

bool has_exchange_api(nb::handle type) {
  if (!PyType_Check(type.ptr())) throw nb::type_error("expected a type");
  return xapi::lookup(reinterpret_cast<PyTypeObject*>(type.ptr())) != nullptr;
}

}  // namespace

// ---- decode (flash_kda::decode over a state pool) -------------------------------------
namespace {

constexpr ArgInfo kDecodeArgs[] = {
    {"q", 4, false, false},          {"k", 4, false, false},
    {"v", 4, false, false},          {"g", 4, false, false},
    {"beta", 3, false, false},       {"out", 4, true, false},
    {"A_log", 1, false, false},      {"dt_bias", 2, false, false},
    {"state", 4, true, false},       {"state_indices", 1, false, false},
    {"cu_seqlens", 1, false, true},
};
constexpr int kNumDecodeArgs = int(sizeof(kDecodeArgs) / sizeof(kDecodeArgs[0]));
static_assert(kNumDecodeArgs <= kNumArgs, "Holder has a slot for every decode argument");
enum DecodeArgIndex { kDecQ, kDecK, kDecV, kDecG, kDecBeta, kDecOut, kDecALog, kDecDtBias,
                      kDecState, kDecIndices, kDecCu };

#define FLASH_KDA_DECODE_ARGS                                                              \
  nb::handle q, nb::handle k, nb::handle v, nb::handle g, nb::handle beta, double scale,   \
      nb::handle out, nb::handle A_log, nb::handle dt_bias, double lower_bound,            \
      nb::handle state, nb::handle state_indices, nb::handle cu_seqlens
#define FLASH_KDA_DECODE_PASS                                                              \
  q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices, cu_seqlens

flash_kda::DecodeParams make_decode_params(FLASH_KDA_DECODE_ARGS,
                                           const std::vector<std::string>& bf16, Holder& hold) {
  const uint32_t mask = bf16.empty() ? 0u : bf16_mask(bf16, kDecodeArgs, kNumDecodeArgs);
  auto conv = [&](nb::handle obj, int idx) {
    return convert_tensor(obj, kDecodeArgs[idx], idx, (mask >> idx) & 1u, hold);
  };
  flash_kda::DecodeParams p;
  p.q = conv(q, kDecQ);
  p.k = conv(k, kDecK);
  p.v = conv(v, kDecV);
  p.g = conv(g, kDecG);
  p.beta = conv(beta, kDecBeta);
  p.scale = scale;
  p.out = conv(out, kDecOut);
  p.A_log = conv(A_log, kDecALog);
  p.dt_bias = conv(dt_bias, kDecDtBias);
  p.lower_bound = lower_bound;
  p.state = conv(state, kDecState);
  p.state_indices = conv(state_indices, kDecIndices);
  p.cu_seqlens = conv(cu_seqlens, kDecCu);
  return p;
}

void py_decode(FLASH_KDA_DECODE_ARGS, nb::handle stream, nb::handle workspace,
               const std::vector<std::string>& bf16) {
  Holder hold;
  const flash_kda::DecodeParams p = make_decode_params(FLASH_KDA_DECODE_PASS, bf16, hold);
  const xapi::Api* api = hold.api[kDecQ];
  void* ws_ptr = nullptr;
  size_t ws_bytes = 0;
  try {
    const cudaStream_t cuda_stream = resolve_stream(stream, p.q, api);
    if (p.q.present() && p.q.device == flash_kda::DeviceType::kCUDA)
      acquire_workspace(workspace, flash_kda::decode_workspace_size(p), p.q, api, hold, ws_ptr,
                        ws_bytes);
    nb::gil_scoped_release release;
    flash_kda::decode(p, ws_ptr, ws_bytes, cuda_stream);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

void py_reference_decode(FLASH_KDA_DECODE_ARGS, const std::vector<std::string>& bf16) {
  Holder hold;
  const flash_kda::DecodeParams p = make_decode_params(FLASH_KDA_DECODE_PASS, bf16, hold);
  try {
    nb::gil_scoped_release release;
    flash_kda::reference_decode(p);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

size_t py_decode_workspace_size(FLASH_KDA_DECODE_ARGS, const std::vector<std::string>& bf16) {
  Holder hold;
  const flash_kda::DecodeParams p = make_decode_params(FLASH_KDA_DECODE_PASS, bf16, hold);
  try {
    return flash_kda::decode_workspace_size(p);
  } catch (const flash_kda::Error& e) {
    raise_error(e);
  }
}

}  // namespace

#define FLASH_KDA_NB_DECODE_ARGS                                                           \
  "q"_a.none(), "k"_a.none(), "v"_a.none(), "g"_a.none(), "beta"_a.none(), "scale"_a,      \
      "out"_a.none(), "A_log"_a.none(), "dt_bias"_a.none(), "lower_bound"_a,               \
      "state"_a.none(), "state_indices"_a.none(), "cu_seqlens"_a.none() = nb::none()

// Registers decode, reference_decode and decode_workspace_size on the module.
void register_decode(nb::module_& m) {
  m.attr("decode_status_bad_cu_seqlens") = flash_kda::kDecodeStatusBadCuSeqlens;
  m.attr("decode_status_duplicate_index") = flash_kda::kDecodeStatusDuplicateIndex;
  m.attr("decode_status_index_out_of_range") = flash_kda::kDecodeStatusIndexOutOfRange;
  m.attr("max_decode_tokens") = flash_kda::kMaxDecodeTokens;
  m.def("decode", &py_decode, FLASH_KDA_NB_DECODE_ARGS, nb::kw_only(),
        "stream"_a.none() = nb::none(), "workspace"_a.none() = nb::none(),
        "bf16"_a = std::vector<std::string>(),
        "One KDA decode step over a state pool (flash_kda::decode). Same conventions as fwd "
        "for stream, workspace and bf16. The GIL is released during the call.");
  m.def("decode_workspace_size", &py_decode_workspace_size, FLASH_KDA_NB_DECODE_ARGS,
        nb::kw_only(), "bf16"_a = std::vector<std::string>(),
        "Bytes of workspace decode needs (flash_kda::decode_workspace_size); validates.");
  m.def("reference_decode", &py_reference_decode, FLASH_KDA_NB_DECODE_ARGS, nb::kw_only(),
        "bf16"_a = std::vector<std::string>(),
        "The float64 oracle of decode (flash_kda::reference_decode) on host tensors.");
}

// Every tensor argument accepts None here; missing required tensors are
// reported by the validator ("q: required tensor is missing (got None)").
#define FLASH_KDA_NB_ARGS                                                                  \
  "q"_a.none(), "k"_a.none(), "v"_a.none(), "g"_a.none(), "beta"_a.none(), "scale"_a,      \
      "out"_a.none(), "A_log"_a.none(), "dt_bias"_a.none(), "lower_bound"_a,               \
      "initial_state"_a.none() = nb::none(), "final_state"_a.none() = nb::none(),          \
      "cu_seqlens"_a.none() = nb::none(), "state_indices"_a.none() = nb::none(),            \
      "final_state_indices"_a.none() = nb::none(), "zero_start"_a.none() = nb::none(),     \
      "checkpoints"_a.none() = nb::none(), "checkpoint_offsets"_a.none() = nb::none(),     \
      "checkpoint_interval"_a = 0

NB_MODULE(_C, m) {
  m.doc() =
      "flash_kda._C: low-level bindings of the flash-kda C++ API. Use the functions of the "
      "`flash_kda` package instead; they pick the stream and workspace for you.";
  m.attr("__version__") = FLASH_KDA_VERSION;
  m.attr("head_dim") = flash_kda::kHeadDim;
  m.attr("min_lower_bound") = flash_kda::kMinLowerBound;
  m.attr("max_lower_bound") = flash_kda::kMaxLowerBound;
  m.attr("status_ok") = flash_kda::kStatusOk;
  m.attr("status_bad_cu_seqlens") = flash_kda::kStatusBadCuSeqlens;
  m.attr("status_bad_state_indices") = flash_kda::kStatusBadStateIndices;
  m.attr("status_bad_checkpoint_offsets") = flash_kda::kStatusBadCheckpointOffsets;
  m.attr("checkpoint_granule") = flash_kda::kCheckpointGranule;
#ifdef FLASH_KDA_PY_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif

  m.def("fwd", &py_fwd, FLASH_KDA_NB_ARGS, nb::kw_only(), "stream"_a.none() = nb::none(),
        "workspace"_a.none() = nb::none(), "bf16"_a = std::vector<std::string>(), "gate_mode"_a = 0,
        "Runs the KDA forward (flash_kda::fwd). Tensors: any DLPack object or None.\n"
        "stream: cudaStream_t as an int, or None: the current stream of q's framework when its "
        "type has the DLPack C exchange API (PyTorch), else the default stream.\n"
        "workspace: a uint8 tensor of at least workspace_size(...) bytes on q's device, a "
        "callable nbytes -> tensor (called only when nbytes > 0), or None: allocated by q's "
        "framework through the exchange API when needed.\n"
        "bf16: names of arguments passed as uint16 views of bfloat16 data.\n"
        "gate_mode: 0 lower_bound, 1 softplus, 2 precomputed (flash_kda::GateMode).\n"
        "The GIL is released during the call.");
  m.def("workspace_size", &py_workspace_size, FLASH_KDA_NB_ARGS, nb::kw_only(),
        "bf16"_a = std::vector<std::string>(), "gate_mode"_a = 0,
        "Bytes of workspace fwd needs for these arguments (flash_kda::fwd_workspace_size); "
        "validates them.");
  m.def("reference_fwd", &py_reference_fwd, FLASH_KDA_NB_ARGS, nb::kw_only(),
        "bf16"_a = std::vector<std::string>(), "gate_mode"_a = 0,
        "The float64 token-by-token oracle (flash_kda::reference_fwd) on host tensors. "
        "The GIL is released during the call.");
  m.def(
      "cuda_backend_available",
      [](int device_id) { return flash_kda::cuda_backend_available(device_id); },
      "device_id"_a = 0,
      "True when this build has CUDA kernels for the device's compute capability.");
  m.def("build_info", &flash_kda::build_info,
        "Description of the build (version, CUDA architectures).");
  m.def("has_exchange_api", &has_exchange_api, "type"_a,
        "True when tensors of this type are read through the DLPack C exchange API "
        "(`__dlpack_c_exchange_api__`), which also gives fwd their current stream and "
        "workspace allocator.");
  register_decode(m);
}
