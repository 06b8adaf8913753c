// How the process's allocator treats page buffers.
//
// Pages are megabytes, allocated and freed at the rate of puts, gets and promotions. glibc's
// malloc serves a block over its mmap threshold (128 KiB, raised adaptively up to 32 MiB) with a
// fresh mmap and returns it to the kernel when freed, and trims the heap top past 128 KiB, so the
// next page faults every one of its 4 KiB pages in again (docs/benchmarks.md "Tiers": the disk
// read of a promotion ran at half the rate of a read into warm memory).
//
// Thread-safety: call once, at start-up.
#pragma once

namespace slimkv::cache {

// Keeps freed page memory in the process for reuse: mmap threshold at glibc's maximum (32 MiB
// on 64-bit; larger pages are still mapped and unmapped), heap trimming only past 1 GiB free.
// The resident set then stays near its high-water mark, which for a cache is its budget.
void KeepFreedPageMemory();

}  // namespace slimkv::cache
