/*
 * Timing harness for one lstmgen model, measured inside C (no Python). bench.py generates the
 * model's C with prefix `bench` into a folder and compiles this file next to it with the same
 * flags as lstmgen's Python builds:
 *
 *     cc <flags> -I<dir> harness.c <dir>/bench.c -lm -o harness
 *     ./harness T B [data.bin]
 *
 * data.bin (bench.py writes it) holds x (T, B, I) and then, per cell, the packed w_ih, w_hh, bias
 * and w_hr exactly as the Python model holds them, so both compute the same numbers ("check"
 * proves it); without it weights and inputs are pseudo-random, uniform in (-1/sqrt(H), 1/sqrt(H))
 * and (-1, 1). Commands arrive on stdin, one per line, so bench.py can
 * interleave this process with the Python peers; each answer is one line on stdout:
 *
 *     forward N      N timings of bench_forward over the whole (T, B) sequence, in ns
 *     step N K       N timings of bench_step (B rows), each the mean of K consecutive steps, in ns
 *     check          a checksum of the last outputs (proves the work is not optimised away)
 *     quit
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define CELLS (BENCH_NUM_LAYERS * BENCH_NUM_DIRECTIONS)

static uint32_t rng_state = 12345u;

static float uniform(float scale) /* in (-scale, scale) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return scale * ((float)(rng_state >> 8) * (2.0f / 16777216.0f) - 1.0f);
}

static float *filled(size_t n, float scale) /* 64-byte aligned, like lstmgen's packed weights */
{
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(float) * (n ? n : 1)) != 0) {
        p = NULL;
    }
    float *a = p;
    if (a == NULL) {
        fprintf(stderr, "harness: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; ++i) {
        a[i] = uniform(scale);
    }
    return a;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* n floats from fh into a (when fh is given) */
static void load(FILE *fh, float *a, size_t n)
{
    if (fh != NULL && fread(a, sizeof(float), n, fh) != n) {
        fprintf(stderr, "harness: data file too short\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s T B [data.bin]\n", argv[0]);
        return 2;
    }
    FILE *data = NULL;
    if (argc == 4 && (data = fopen(argv[3], "rb")) == NULL) {
        fprintf(stderr, "harness: cannot open %s\n", argv[3]);
        return 2;
    }
    const int32_t T = (int32_t)atoi(argv[1]), B = (int32_t)atoi(argv[2]);
    const size_t H = BENCH_HIDDEN_SIZE, R = BENCH_OUTPUT_SIZE, G = BENCH_GATES;
    const float k = 1.0f / sqrtf((float)H);
    bench_weights w;
    memset(&w, 0, sizeof(w));
    float *x = filled((size_t)T * (size_t)B * BENCH_INPUT_SIZE, 1.0f);
    load(data, x, (size_t)T * (size_t)B * BENCH_INPUT_SIZE);
    for (int32_t i = 0; i < CELLS; ++i) {
        const size_t in = i < BENCH_NUM_DIRECTIONS ? BENCH_INPUT_SIZE : BENCH_NUM_DIRECTIONS * R;
        float *w_ih = filled(G * in, k), *w_hh = filled(G * R, k), *bias = filled(G, k);
        float *w_hr = BENCH_PROJ_SIZE ? filled(H * R, k) : NULL;
        load(data, w_ih, G * in);
        load(data, w_hh, G * R);
        load(data, bias, G);
        if (w_hr != NULL) {
            load(data, w_hr, H * R);
        }
        w.cell[i].w_ih = w_ih;
        w.cell[i].w_hh = w_hh;
        w.cell[i].bias = bias;
        w.cell[i].w_hr = w_hr;
        w.cell[i].w_ph = filled(3 * H, k);
    }
    if (data != NULL) {
        fclose(data);
    }
    const size_t y_row = BENCH_NUM_DIRECTIONS * R;
    float *y = filled((size_t)T * (size_t)B * y_row, 0.0f);
    float *h = filled(CELLS * (size_t)B * R, 0.0f), *c = filled(CELLS * (size_t)B * H, 0.0f);
    const int64_t ws_floats = bench_workspace_floats(T, B);
    if (ws_floats < 0) {
        fprintf(stderr, "harness: bad size\n");
        return 2;
    }
    float *ws = filled((size_t)ws_floats, 0.0f);
    float *y_t = filled((size_t)B * R, 0.0f);

    char line[128];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        long n = 0, reps = 1;
        int rc = 0;
        if (sscanf(line, "forward %ld", &n) == 1) {
            for (long i = 0; i < n; ++i) {
                const double t0 = now_ns();
                rc |= bench_forward(&w, x, T, B, NULL, NULL, NULL, y, h, c, ws, ws_floats);
                printf("%s%.0f", i ? " " : "", now_ns() - t0);
            }
        } else if (sscanf(line, "step %ld %ld", &n, &reps) == 2) {
#if BENCH_NUM_DIRECTIONS == 1
            for (long i = 0; i < n; ++i) {
                const double t0 = now_ns();
                for (long r = 0; r < reps; ++r) {
                    /* x_t cycles through the sequence's rows (B rows each) */
                    rc |= bench_step(&w, x + (size_t)(r % T) * (size_t)B * BENCH_INPUT_SIZE, B, h, c, y_t, ws, ws_floats);
                }
                printf("%s%.1f", i ? " " : "", (now_ns() - t0) / (double)reps);
            }
#else
            rc = -1;
#endif
        } else if (strncmp(line, "check", 5) == 0) {
            double sum = 0.0;
            for (size_t i = 0; i < (size_t)T * (size_t)B * y_row; ++i) {
                sum += (double)y[i];
            }
            printf("%.9g", sum);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            rc = -100;
        }
        printf("%s\n", rc ? " ERROR" : "");
        fflush(stdout);
    }
    return 0;
}
