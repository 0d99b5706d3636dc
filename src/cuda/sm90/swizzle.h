// Index math of the SM90 kernel's swizzled shared-memory tiles, in one
// header the host tests can include (tests/cpp/test_swizzle.cpp checks the
// identities the kernel relies on: stepping by XOR, conflict-free rows).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FLASH_KDA_SWIZZLE_FN __host__ __device__ __forceinline__
#else
#define FLASH_KDA_SWIZZLE_FN inline
#endif

namespace flash_kda::sm90 {

// ---- swizzled tiles -------------------------------------------------------------
// A [rows][128] bf16 tile stores row r's 16-byte chunk c at chunk c ^ (r & 7),
// so the 8 rows an ldmatrix reads hit 8 different bank groups. Rows r and
// r + 8k share a pattern, so a tile's rows can be copied to row + 16 verbatim.
FLASH_KDA_SWIZZLE_FN int swz128(int row, int col) {
  return row * 128 + (((col >> 3) ^ (row & 7)) << 3) + (col & 7);
}
// Stepping along a row of a swz128 tile: for col = 16·ks + c (c < 16), the
// chunk 2·ks + c/8 lands at (2·ks) ^ (c/8 ^ row & 7), so the byte address of
// step ks is the step-0 address XOR 32·ks, provided the tile is 256-byte
// aligned (the XOR stays inside the row). One LOP3 instead of the whole index.
FLASH_KDA_SWIZZLE_FN uint32_t swz128_step(uint32_t addr0, int ks) { return addr0 ^ uint32_t(32 * ks); }
// A [16][16] bf16 tile (two chunks per row): rows with bit 2 set swap their chunks.
FLASH_KDA_SWIZZLE_FN int swz16(int row, int col) {
  return row * 16 + ((((col >> 3) ^ (row >> 2)) & 1) << 3) + (col & 7);
}

// A [kRows][128] bf16 tile in wgmma's canonical 128-byte-swizzle layout: two
// [kRows][64] halves (columns 0-63, then 64-127) of 128-byte rows, 16-byte
// chunk c of row r stored at chunk c ^ (r & 7) (the same XOR as swz128, with
// half the row pitch). The hardware swizzles address bits, so the tile must
// be 1024-byte aligned. wgmma reads it as a K-major operand (rows = N: [kd; qd])
// or as an MN-major one (rows = K: kr); ldmatrix and the prep's stores see
// whole 16-byte chunks, conflict-free as with swz128.
template <int kRows>
FLASH_KDA_SWIZZLE_FN int sw128_index(int row, int col) {
  return (col >> 6) * (kRows * 64) + row * 64 + ((((col >> 3) & 7) ^ (row & 7)) << 3) + (col & 7);
}

// The same stepping in a sw128_index tile (1024-byte aligned): col = 16·ks + c
// is in half ks / 4 (kRows·128 bytes further) at chunk (2·(ks % 4)) ^ (...).
template <int kRows>
FLASH_KDA_SWIZZLE_FN uint32_t sw128_step(uint32_t addr0, int ks) {
  return (addr0 ^ uint32_t(32 * (ks % 4))) + uint32_t((ks / 4) * kRows * 128);
}

}  // namespace flash_kda::sm90
