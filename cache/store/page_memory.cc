#include "cache/store/page_memory.h"

#include <malloc.h>

namespace slimkv::cache {

void KeepFreedPageMemory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace slimkv::cache
