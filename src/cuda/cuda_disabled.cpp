// The CUDA backend of a CPU-only build: every CUDA call is refused clearly.
#include "api/validate.h"
#include "cuda/cuda_backend.h"

namespace flash_kda::cuda {

bool available(int) { return false; }

size_t workspace_size(const FwdParams&, const FwdShape&) { return 0; }

void forward(const FwdParams&, const FwdShape&, void*, size_t, cudaStream_t) {
  detail::fail(ErrorKind::kUnsupported, "q",
               "q: is a CUDA tensor, but this build of flash-kda has no CUDA kernels "
               "(built without a CUDA compiler); rebuild with FLASH_KDA_CUDA=ON");
}

const char* compiled_architectures() { return "none"; }

}  // namespace flash_kda::cuda
