// The CUDA decode backend of a CPU-only build: every CUDA call is refused clearly.
#include "api/validate.h"
#include "cuda/decode/decode_backend.h"

namespace flash_kda::cuda {

size_t decode_workspace_size(const DecodeParams&, const DecodeShape&) { return 0; }

void decode(const DecodeParams&, const DecodeShape&, void*, size_t, cudaStream_t) {
  detail::fail(ErrorKind::kUnsupported, "q",
               "q: is a CUDA tensor, but this build of flash-kda has no CUDA kernels "
               "(built without a CUDA compiler); rebuild with FLASH_KDA_CUDA=ON");
}

}  // namespace flash_kda::cuda
