/*
 * Timing harness for one lstmgen model, measured inside C (no Python). bench.py generates the
 * model's C with prefix `bench` into a folder and compiles this file next to it with the same
 * flags as lstmgen's Python builds:
 *
 *     cc <flags> -I<dir> harness.c <dir>/bench.c -lm -o harness
 *     ./harness T B [data.bin]
 *
 * data.bin (bench.py writes it) holds x (T, B, I) and then, per cell, the packed w_ih, w_hh, bias
 * and w_hr exactly as the Python model holds them, then (int8 weights) the scales s_ih, s_hh and
 * s_hr, so both compute the same numbers ("check" proves it); without it weights and inputs are
 * pseudo-random, uniform in (-1/sqrt(H), 1/sqrt(H)) and (-1, 1). The weight matrices are read with
 * the element size of the generated header's field types (sizeof(*w.cell[0].w_ih): 4 float32,
 * 2 float16 / bfloat16, 1 int8), so one harness serves every weights_dtype; build it with
 * -DHARNESS_INT8_SCALES for an int8 model (its cell struct then has s_ih, s_hh, s_hr), and with
 * -DHARNESS_KGROUP=g when its matrices are packed in groups of g consecutive k (int8 on integer
 * dot products: each matrix's K padded to a multiple of g).
 * Commands arrive on stdin, one per line, so bench.py can interleave this process with the
 * Python peers; each answer is one line on stdout:
 *
 *     forward N      N timings of bench_forward over the whole (T, B) sequence, in ns
 *     step N K       N timings of bench_step (B rows), each the mean of K consecutive steps, in ns
 *     check          a checksum of the last outputs (proves the work is not optimised away)
 *     dump PATH      the last outputs y (T, B, D*R) as raw float32 into PATH (for the error columns);
 *                    answers the number of floats written
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

static void *aligned(size_t bytes) /* 64-byte aligned, like lstmgen's packed weights */
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0 || p == NULL) {
        fprintf(stderr, "harness: out of memory\n");
        exit(2);
    }
    return p;
}

static float *filled(size_t n, float scale)
{
    float *a = aligned(sizeof(float) * n);
    for (size_t i = 0; i < n; ++i) {
        a[i] = uniform(scale);
    }
    return a;
}

/* n weight elements of `size` bytes (4: float32, 2: float16/bfloat16, 1: int8), pseudo-random and
 * finite: the top half of a small float32 is a bfloat16 and, read as a float16, a finite value too;
 * int8 values are uniform in (-127, 127) */
static void *filled_weights(size_t n, size_t size, float scale)
{
    if (size == sizeof(float)) {
        return filled(n, scale);
    }
    unsigned char *a = aligned(size * n);
    for (size_t i = 0; i < n; ++i) {
        if (size == 2) {
            const float v = uniform(scale);
            uint32_t u;
            memcpy(&u, &v, sizeof(u));
            const uint16_t top = (uint16_t)(u >> 16);
            memcpy(a + 2 * i, &top, 2);
        } else {
            a[i] = (unsigned char)(int8_t)lrintf(uniform(127.0f));
        }
    }
    return a;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* n elements of `size` bytes from fh into a (when fh is given) */
static void load(FILE *fh, void *a, size_t size, size_t n)
{
    if (fh != NULL && fread(a, size, n, fh) != n) {
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
    /* bytes per weight-matrix element, from the header's own types */
    const size_t ws_ih = sizeof(*w.cell[0].w_ih), ws_hh = sizeof(*w.cell[0].w_hh), ws_hr = sizeof(*w.cell[0].w_hr);
#ifndef HARNESS_INT8_SCALES
    if (ws_ih == 1 || ws_hh == 1 || ws_hr == 1) {
        fprintf(stderr, "harness: int8 weights need their scales: build with -DHARNESS_INT8_SCALES\n");
        return 2;
    }
#endif
    float *x = filled((size_t)T * (size_t)B * BENCH_INPUT_SIZE, 1.0f);
    load(data, x, sizeof(float), (size_t)T * (size_t)B * BENCH_INPUT_SIZE);
#ifdef HARNESS_KGROUP
#define KPAD(k) (((k) + HARNESS_KGROUP - 1) / HARNESS_KGROUP * HARNESS_KGROUP)
#else
#define KPAD(k) (k)
#endif
    for (int32_t i = 0; i < CELLS; ++i) {
        const size_t in = KPAD(i < BENCH_NUM_DIRECTIONS ? BENCH_INPUT_SIZE : BENCH_NUM_DIRECTIONS * R);
        void *w_ih = filled_weights(G * in, ws_ih, k), *w_hh = filled_weights(G * KPAD(R), ws_hh, k);
        float *bias = filled(G, k);
        void *w_hr = BENCH_PROJ_SIZE ? filled_weights(KPAD(H) * R, ws_hr, k) : NULL;
        load(data, w_ih, ws_ih, G * in);
        load(data, w_hh, ws_hh, G * KPAD(R));
        load(data, bias, sizeof(float), G);
        if (w_hr != NULL) {
            load(data, w_hr, ws_hr, KPAD(H) * R);
        }
        w.cell[i].w_ih = w_ih;
        w.cell[i].w_hh = w_hh;
        w.cell[i].bias = bias;
        w.cell[i].w_hr = w_hr;
        w.cell[i].w_ph = filled(3 * H, k);
#ifdef HARNESS_INT8_SCALES
        /* one scale per output row of each torch matrix, in the packed column order (1/127:
         * the pseudo-random int8 values then span the float weights' range) */
        float *s_ih = filled(G, k / 127.0f), *s_hh = filled(G, k / 127.0f);
        float *s_hr = BENCH_PROJ_SIZE ? filled(R, k / 127.0f) : NULL;
        load(data, s_ih, sizeof(float), G);
        load(data, s_hh, sizeof(float), G);
        if (s_hr != NULL) {
            load(data, s_hr, sizeof(float), R);
        }
        w.cell[i].s_ih = s_ih;
        w.cell[i].s_hh = s_hh;
        w.cell[i].s_hr = s_hr;
#endif
    }
    if (data != NULL && fgetc(data) != EOF) {
        fprintf(stderr, "harness: data file longer than this model's input and weights\n");
        return 2;
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

    char line[4096];
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
        } else if (strncmp(line, "dump ", 5) == 0) {
            line[strcspn(line, "\r\n")] = '\0';
            FILE *out = fopen(line + 5, "wb");
            const size_t n = (size_t)T * (size_t)B * y_row;
            if (out == NULL || fwrite(y, sizeof(float), n, out) != n) {
                rc = -101;
            }
            if (out != NULL && fclose(out) != 0) {
                rc = -101;
            }
            printf("%zu", n);
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
