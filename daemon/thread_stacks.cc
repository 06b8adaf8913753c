// Thread stacks that hold what their creator asked for.
//
// glibc carves a thread's static TLS (that of every library loaded at start-up) out of the stack
// size the creator asked for (glibc bug 11787), so a library that asks for a small fixed stack
// gets less than it planned for, by an amount that depends on what else is linked. civetweb,
// which serves /metrics for prometheus-cpp, asks for 100 KiB per worker; OpenBLAS alone takes
// 60 KiB of TLS, and with the CUDA runtime's the first scrape overflowed the worker's stack and
// killed the daemon. This definition, linked into the executable, interposes glibc's
// pthread_attr_setstacksize for every library: the stack asked for gets the static TLS on top,
// as Rust's standard library does for its own threads.
//
// Thread-safety: safe to call concurrently (the function pointers are resolved once, under the
// static-initialization guard).
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

namespace {

using SetStackSize = int (*)(pthread_attr_t*, size_t);
using MinStack = size_t (*)(const pthread_attr_t*);

struct Glibc {
  SetStackSize set_stack_size;
  // The stack a thread needs at least: static TLS, guard page and PTHREAD_STACK_MIN (glibc's
  // own, GLIBC_PRIVATE; absent elsewhere, then nothing is added).
  MinStack min_stack;
};

const Glibc& Real() {
  static const Glibc g{
      reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize")),
      reinterpret_cast<MinStack>(dlsym(RTLD_DEFAULT, "__pthread_get_minstack"))};
  return g;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  const Glibc& g = Real();
  return g.set_stack_size(attr, g.min_stack != nullptr ? size + g.min_stack(attr) : size);
}
