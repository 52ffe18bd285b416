/*
 * This core's fp32 FMA peak, measured: 12 independent FMA chains on the widest vectors the
 * compiler enables (AVX-512, AVX2+FMA, NEON or plain C), enough to cover FMA latency x ports
 * on current cores. Prints GFLOP/s (2 flops per FMA lane) of the best of several runs.
 *
 *     cc -O2 -march=native benchmarks/peak.c -o peak && ./peak
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define SET1(x) _mm512_set1_ps(x)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SUM(v) _mm512_reduce_add_ps(v)
#define ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define SET1(x) _mm256_set1_ps(x)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float SUM(vec v)
{
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#define ISA "avx2"
#elif defined(__aarch64__)
#include <arm_neon.h>
typedef float32x4_t vec;
#define LANES 4
#define SET1(x) vdupq_n_f32(x)
#define FMA(a, b, c) vfmaq_f32(c, a, b)
#define SUM(v) vaddvq_f32(v)
#define ISA "neon"
#else
typedef float vec;
#define LANES 1
#define SET1(x) (x)
#define FMA(a, b, c) ((a) * (b) + (c))
#define SUM(v) (v)
#define ISA "scalar"
#endif

#define CHAINS 12

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    const vec m = SET1(0.999999f), b = SET1(1e-7f);
    /* twelve named chains (not an array: that could live in memory) */
    vec a0 = SET1(0.0f), a1 = SET1(1.0f), a2 = SET1(2.0f), a3 = SET1(3.0f), a4 = SET1(4.0f), a5 = SET1(5.0f);
    vec a6 = SET1(6.0f), a7 = SET1(7.0f), a8 = SET1(8.0f), a9 = SET1(9.0f), a10 = SET1(10.0f), a11 = SET1(11.0f);
    const long iters = 20000000;
    double best = 0.0;
    for (int run = 0; run < 7; ++run) {
        const double t0 = now();
        for (long i = 0; i < iters; ++i) {
            a0 = FMA(a0, m, b);
            a1 = FMA(a1, m, b);
            a2 = FMA(a2, m, b);
            a3 = FMA(a3, m, b);
            a4 = FMA(a4, m, b);
            a5 = FMA(a5, m, b);
            a6 = FMA(a6, m, b);
            a7 = FMA(a7, m, b);
            a8 = FMA(a8, m, b);
            a9 = FMA(a9, m, b);
            a10 = FMA(a10, m, b);
            a11 = FMA(a11, m, b);
        }
        const double gflops = 2.0 * LANES * CHAINS * (double)iters / (now() - t0) / 1e9;
        best = gflops > best ? gflops : best;
    }
    const float sink = SUM(a0) + SUM(a1) + SUM(a2) + SUM(a3) + SUM(a4) + SUM(a5) + SUM(a6) + SUM(a7) + SUM(a8) +
        SUM(a9) + SUM(a10) + SUM(a11);
    printf("{\"isa\": \"%s\", \"lanes\": %d, \"gflops\": %.2f, \"sink\": %g}\n", ISA, LANES, best, (double)sink);
    return 0;
}
