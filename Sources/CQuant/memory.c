// malloc settings for the process (called once by the CLI before any model work).
#include "cquant.h"

#include <malloc.h>

int pq_map_large_allocations(int64_t bytes) {
    // A fixed threshold also turns off glibc's adaptive one, which raised it after each freed
    // tile so later tiles stayed in (per-thread) heaps.
    return mallopt(M_MMAP_THRESHOLD, (int)bytes);
}
