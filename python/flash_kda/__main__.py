"""``python -m flash_kda``: prints the build and how to run the demo."""

import flash_kda

print(f"flash_kda {flash_kda.__version__}: {flash_kda.build_info()}")
print(f"CUDA kernels usable on device 0: {flash_kda.cuda_available(0)}")
print("Run the end-to-end demo with: python -m flash_kda.demo --help")
