// A persistent worker pool for the engine's parallel parts (Parallel.parts in ModelKit).
//
// Decoding one token of a 1.5B model is about 120 products of 0.02–1.5 ms each; waking a
// sleeping thread per product (libdispatch on Linux: a futex wake, tens of µs on a VM) left one
// core idle for a measurable share of each. Here the workers spin on the job word for a short
// while after each job (as ggml's thread pool polls), so the next product starts on both cores
// at once, then sleep on a condition variable.
//
// One job at a time: a caller that finds the pool busy (a concurrent caller, or a part calling
// back in) gets 0 and runs its parts some other way.
#define _GNU_SOURCE
#include "cquant.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

// The job word: generation (24 bits) | parts (20 bits) | next part to claim (20 bits). Claiming a
// part is a compare-and-swap on it, so a worker can never take a part of a later job than the
// one whose generation it read (fn and ctx are only rewritten after every claimed part is done).
#define PART_BITS 20
#define PART_MASK ((UINT64_C(1) << PART_BITS) - 1)
#define GEN_SHIFT (2 * PART_BITS)

static struct {
    pthread_mutex_t busy;              // held by the calling thread for a whole job
    pthread_mutex_t lock;              // guards sleeping workers
    pthread_cond_t wake;
    pq_part_fn fn;
    void *ctx;
    int workers;
    int requested;                     // workers to start (pq_pool_set_workers), −1: cores − 1
    _Atomic int64_t spin_ns;
    _Atomic int sleepers;
    // Claimed by every part and counted by every finish: each on its own cache line.
    _Alignas(64) _Atomic uint64_t word;
    _Alignas(64) _Atomic int64_t done;  // parts of the current job finished
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, .requested = -1};

static pthread_once_t started = PTHREAD_ONCE_INIT;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// Claims and runs parts of generation `gen` until none is left.
static void run_parts(uint64_t gen) {
    uint64_t w = atomic_load_explicit(&pool.word, memory_order_acquire);
    for (;;) {
        const uint64_t parts = (w >> PART_BITS) & PART_MASK, next = w & PART_MASK;
        if ((w >> GEN_SHIFT) != gen || next >= parts) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.word, &w, w + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        pool.fn(pool.ctx, (int64_t)next);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
        w = atomic_load_explicit(&pool.word, memory_order_acquire);
    }
}

static void *worker(void *arg) {
    (void)arg;
    uint64_t seen = atomic_load(&pool.word) >> GEN_SHIFT;
    for (;;) {
        // Spin for the next job (pause between polls), checking the clock every 64 polls.
        uint64_t gen = atomic_load_explicit(&pool.word, memory_order_acquire) >> GEN_SHIFT;
        const int64_t start = now_ns();
        for (uint64_t i = 1; gen == seen; i++) {
            _mm_pause();
            if ((i & 63) == 0 && now_ns() - start > atomic_load_explicit(&pool.spin_ns, memory_order_relaxed)) break;
            gen = atomic_load_explicit(&pool.word, memory_order_acquire) >> GEN_SHIFT;
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = atomic_load(&pool.word) >> GEN_SHIFT) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = gen;
        run_parts(gen);
    }
    return NULL;
}

static void start_workers(void) {
    // The cores this process may run on (affinity), unless the caller said how many workers.
    cpu_set_t set;
    long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    if (pool.requested >= 0) cores = pool.requested + 1;
    // 200 µs by default: longer than the gaps between a forward's products, short enough not to
    // hold a core from OpenBLAS's threads in the GEMMs that follow (bench-train, measured).
    const char *spin = getenv("PRECEPT_POOL_SPIN_US");
    atomic_store(&pool.spin_ns, spin ? (int64_t)atoll(spin) * 1000 : 200000);
    for (long i = 1; i < cores; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker, NULL) == 0) pool.workers++;
        pthread_attr_destroy(&attr);
    }
}

int pq_pool_run(int64_t parts, pq_part_fn fn, void *ctx) {
    if (parts < 1 || parts > (int64_t)PART_MASK) return 0;
    pthread_once(&started, start_workers);
    if (pool.workers == 0 || pthread_mutex_trylock(&pool.busy) != 0) return 0;
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    const uint64_t gen = ((atomic_load(&pool.word) >> GEN_SHIFT) + 1) & ((UINT64_C(1) << (64 - GEN_SHIFT)) - 1);
    atomic_store(&pool.word, gen << GEN_SHIFT | (uint64_t)parts << PART_BITS);
    // Seq-cst store then load: either a worker about to sleep sees the new word, or we see it
    // counted as a sleeper and wake it under the lock.
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_parts(gen);
    // The workers' last parts: poll, then yield the core (a worker pre-empted mid-part may need it).
    const int64_t start = now_ns();
    for (uint64_t i = 1; atomic_load_explicit(&pool.done, memory_order_acquire) < parts; i++) {
        if (i > 4096 && now_ns() - start > atomic_load_explicit(&pool.spin_ns, memory_order_relaxed)) sched_yield();
        else _mm_pause();
    }
    pthread_mutex_unlock(&pool.busy);
    return 1;
}

void pq_pool_set_workers(int workers) {
    pool.requested = workers < 0 ? 0 : workers;
}
