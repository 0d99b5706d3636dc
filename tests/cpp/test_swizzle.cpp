// The shared-memory index math of the SM90 kernel (src/cuda/sm90/swizzle.h),
// checked on the host: every layout is a permutation of its tile, the 8 rows
// an ldmatrix reads fall in 8 different 16-byte bank groups, and the XOR
// stepping the prep uses along a row gives the same addresses as the full
// index (for the alignments shared_storage.cuh asserts).
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "cuda/sm90/swizzle.h"

namespace flash_kda::sm90 {
namespace {

constexpr int kCols = 128;  // bf16 columns of every swizzled row tile

// Every (row, col) of a [rows][cols] tile maps to a distinct element of it.
template <typename Index>
void expect_permutation(int rows, int cols, Index index) {
  std::vector<int> seen(size_t(rows) * cols, 0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const int e = index(r, c);
      ASSERT_GE(e, 0) << "row " << r << " col " << c;
      ASSERT_LT(e, rows * cols) << "row " << r << " col " << c;
      ++seen[size_t(e)];
    }
  for (size_t e = 0; e < seen.size(); ++e) EXPECT_EQ(seen[e], 1) << "element " << e;
}

// ldmatrix reads 8 rows x 16 bytes at one column chunk: conflict-free when the
// 8 byte offsets fall in 8 different 16-byte groups of a 128-byte wavefront.
template <typename Index>
void expect_conflict_free_rows(int rows, Index index) {
  for (int r0 = 0; r0 + 8 <= rows; r0 += 8)
    for (int c = 0; c < kCols; c += 8) {
      std::set<int> groups;
      for (int r = r0; r < r0 + 8; ++r) groups.insert((2 * index(r, c) % 128) / 16);
      EXPECT_EQ(groups.size(), 8u) << "rows " << r0 << "-" << r0 + 7 << " col " << c;
    }
}

TEST(Swizzle, Swz128IsAConflictFreePermutation) {
  expect_permutation(16, kCols, swz128);
  expect_conflict_free_rows(16, swz128);
  for (int r = 0; r < 16; ++r)  // a row stays in its own 256 bytes
    for (int c = 0; c < kCols; ++c) EXPECT_EQ(swz128(r, c) / kCols, r);
}

TEST(Swizzle, Sw128IndexIsAConflictFreePermutation) {
  expect_permutation(16, kCols, sw128_index<16>);
  expect_permutation(32, kCols, sw128_index<32>);
  expect_conflict_free_rows(16, sw128_index<16>);
  expect_conflict_free_rows(32, sw128_index<32>);
}

TEST(Swizzle, Swz16IsAPermutation) { expect_permutation(16, 16, swz16); }

// swz128_step(address of (row, c), ks) == address of (row, 16 ks + c) for a
// 256-byte aligned tile.
TEST(Swizzle, Swz128StepMatchesTheFullIndex) {
  for (uint32_t base : {0u, 256u, 0x11000u, 0x21800u})
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c)
        for (int ks = 0; ks < kCols / 16; ++ks)
          ASSERT_EQ(swz128_step(base + 2u * uint32_t(swz128(r, c)), ks), base + 2u * uint32_t(swz128(r, 16 * ks + c)))
              << "base " << base << " row " << r << " col " << c << " ks " << ks;
}

// ... and sw128_step<kRows> for a 1024-byte aligned sw128_index tile.
template <int kRows>
void expect_sw128_step() {
  for (uint32_t base : {0u, 1024u, 0x20000u, 0x35c00u})
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < 16; ++c)
        for (int ks = 0; ks < kCols / 16; ++ks)
          ASSERT_EQ(sw128_step<kRows>(base + 2u * uint32_t(sw128_index<kRows>(r, c)), ks),
                    base + 2u * uint32_t(sw128_index<kRows>(r, 16 * ks + c)))
              << "rows " << kRows << " base " << base << " row " << r << " col " << c << " ks " << ks;
}
TEST(Swizzle, Sw128StepMatchesTheFullIndex) {
  expect_sw128_step<16>();
  expect_sw128_step<32>();
}

// The step identities need the alignment: at a base 32 bytes off, the XOR
// would reach into the neighbouring chunk (this is why shared_storage.cuh
// asserts the tiles' offsets).
TEST(Swizzle, StepNeedsAlignedTiles) {
  bool differs = false;
  for (int ks = 1; ks < 8 && !differs; ++ks)
    differs = swz128_step(32u + 2u * uint32_t(swz128(0, 0)), ks) != 32u + 2u * uint32_t(swz128(0, 16 * ks));
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace flash_kda::sm90
