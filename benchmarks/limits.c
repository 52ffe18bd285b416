/*
 * What bounds the one-row (B = 1) recurrence step on this machine. limits.py generates a model's C
 * (prefix `bench`, target native, math approx, one layer) into a folder and builds this file
 * against it; the generated file is #included so its static kernels can be called directly:
 *
 *     cc <flags> -I<dir> limits.c -lm -o limits && ./limits
 *
 * It prints one line of medians (best of several runs of many calls each), in nanoseconds:
 *
 *     fma <ns>       one dependent vector FMA (a chain: the FMA latency, 4 cycles on recent x86)
 *     tanh <ns>      one vector tanh of math=approx in a dependent chain (its latency)
 *     sigmoid <ns>   the same for sigmoid
 *     read <ns>      one pass of a bare vector sum (FMAs by 1) over the same W_hh, 8 accumulators: what the
 *                    caches deliver for those bytes with no other work, the step's ceiling
 *     step <ns>      one call of the step kernel (gates += h . W_hh^T, then the cell) at t = 0, 1, 0, 1..
 *                    as in a forward (the tiles alternate direction: kernels.py), the same
 *                    gate row every call, so only W_hh and the state move through the caches
 *
 * From these limits.py derives the bytes of W_hh streamed per nanosecond and the step's cost in
 * FMA latencies (cycles, with the 4-cycle assumption), the evidence behind the README's notes on
 * tiny_stream (latency-bound) and kws/medium (bound by how fast W_hh reaches the core).
 */
#define _POSIX_C_SOURCE 200112L
#include "bench.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 15

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static float *aligned(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(float) * (n ? n : 1)) != 0) {
        fprintf(stderr, "limits: out of memory\n");
        exit(2);
    }
    return p;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the median over RUNS of the best-kept per-call time of each kind */
static double median(double *v)
{
    qsort(v, RUNS, sizeof(double), by_value);
    return v[RUNS / 2];
}

int main(void)
{
    const int H = BENCH_HIDDEN_SIZE, G = BENCH_GATES, R = BENCH_OUTPUT_SIZE;
    float *w_hh = aligned((size_t)R * G), *g = aligned((size_t)G);
    float *h = aligned((size_t)R), *c = aligned((size_t)H), *o = aligned((size_t)R), *h_full = aligned((size_t)H);
    for (long i = 0; i < (long)R * G; ++i) {
        w_hh[i] = 0.2f * (float)((i * 7919) % 1001 - 500) / 500.0f / (float)R;
    }
    for (int i = 0; i < G; ++i) {
        g[i] = 0.5f * (float)((i * 13) % 101 - 50) / 50.0f;
    }
    for (int i = 0; i < R; ++i) {
        h[i] = 0.0f;
        o[i] = 0.0f;
    }
    for (int i = 0; i < H; ++i) {
        c[i] = 0.0f;
    }
    bench_cell_weights cw = {0};
    cw.w_hh = w_hh;
    const long chain = 2000000, steps = 20000000 / ((long)R * G / 64 + 64);
    double fma[RUNS], tanh_ns[RUNS], sig[RUNS], step[RUNS], rd[RUNS];
    const long n = (long)R * G, passes = 20000000 / (n / 16 + 64);
    bench_vf s0 = bench_vset1(0.0f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    const bench_vf one = bench_vset1(1.0f);
    bench_vf x = bench_vset1(0.25f);
    const bench_vf a = bench_vset1(0.999f), b = bench_vset1(1e-4f);
    for (int r = 0; r < RUNS; ++r) {
        double t0 = now_ns();
        for (long i = 0; i < chain; ++i) {
            x = bench_vfma(x, a, b);
        }
        double t1 = now_ns();
        fma[r] = (t1 - t0) / (double)chain;
        for (long i = 0; i < chain; ++i) {
            x = bench_vtanh(x);
        }
        double t2 = now_ns();
        tanh_ns[r] = (t2 - t1) / (double)chain;
        for (long i = 0; i < chain; ++i) {
            x = bench_vsigmoid(x);
        }
        double t3 = now_ns();
        sig[r] = (t3 - t2) / (double)chain;
        for (long i = 0; i < steps; ++i) {
            bench_vstep_v0(&cw, g, 1, (int32_t)(i & 1), NULL, h, c, o, R, h_full); /* step i: reads g, updates h, c */
        }
        double t4 = now_ns();
        step[r] = (t4 - t3) / (double)steps;
        for (long i = 0; i < passes; ++i) {
            for (long j = 0; j + 8 * BENCH_VW <= n; j += 8 * BENCH_VW) {
                const float *q = w_hh + j;
                s0 = bench_vfma(bench_vload(q), one, s0);
                s1 = bench_vfma(bench_vload(q + BENCH_VW), one, s1);
                s2 = bench_vfma(bench_vload(q + 2 * BENCH_VW), one, s2);
                s3 = bench_vfma(bench_vload(q + 3 * BENCH_VW), one, s3);
                s4 = bench_vfma(bench_vload(q + 4 * BENCH_VW), one, s4);
                s5 = bench_vfma(bench_vload(q + 5 * BENCH_VW), one, s5);
                s6 = bench_vfma(bench_vload(q + 6 * BENCH_VW), one, s6);
                s7 = bench_vfma(bench_vload(q + 7 * BENCH_VW), one, s7);
            }
        }
        rd[r] = (now_ns() - t4) / (double)passes;
    }
    /* fold the sums into x so the reads cannot be optimised away */
    x = bench_vfma(s0, one, bench_vfma(s1, one, bench_vfma(s2, one, bench_vfma(s3, one, x))));
    x = bench_vfma(s4, one, bench_vfma(s5, one, bench_vfma(s6, one, bench_vfma(s7, one, x))));
    float sink[BENCH_VW];
    bench_vstore(sink, x);
    printf("fma %.4f tanh %.4f sigmoid %.4f step %.3f read %.3f checksum %g\n", median(fma), median(tanh_ns), median(sig),
        median(step), median(rd), (double)(sink[0] + o[0]));
    return 0;
}
