// The C entry points' error convention (shim.cpp, fused.cpp): run `f`, return 0, or return 1
// with the exception's message strdup'ed into `*err` (freed by t2s_free_message).
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>

namespace t2s {

template <typename F>
int guarded(char** err, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return 1;
}

}  // namespace t2s
