/* A standalone caller of generated C with embedded weights; no Python involved.
 * Usage: main_forward IN OUT T B   (IN: T*B*I float32; OUT: y, then h_n, then c_n as float32) */
#include <stdio.h>
#include <stdlib.h>

#include MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(MODEL_PREFIX, name)

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s IN OUT T B\n", argv[0]);
        return 2;
    }
    const int32_t T = (int32_t)atoi(argv[3]), B = (int32_t)atoi(argv[4]);
    const size_t nx = (size_t)T * (size_t)B * INPUT_SIZE;
    const size_t ny = (size_t)T * (size_t)B * Y_ROW;
    const size_t nh = (size_t)CELLS * (size_t)B * OUTPUT_SIZE, nc = (size_t)CELLS * (size_t)B * HIDDEN_SIZE;
    const int64_t nws = FN(_workspace_floats)(T, B);
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    float *h = malloc(sizeof(float) * nh), *c = malloc(sizeof(float) * nc);
    float *ws = malloc(sizeof(float) * (size_t)(nws > 0 ? nws : 1));
    FILE *f = fopen(argv[1], "rb");
    if (!x || !y || !h || !c || !ws || !f || fread(x, sizeof(float), nx, f) != nx) {
        fprintf(stderr, "cannot read input\n");
        return 2;
    }
    fclose(f);
    const int rc = FN(_forward)(&FN(_model_weights), x, T, B, NULL, NULL, NULL, y, h, c, ws, nws);
    if (rc != 0) {
        fprintf(stderr, "forward failed: %d\n", rc);
        return 1;
    }
    f = fopen(argv[2], "wb");
    if (!f || fwrite(y, sizeof(float), ny, f) != ny || fwrite(h, sizeof(float), nh, f) != nh ||
        fwrite(c, sizeof(float), nc, f) != nc) {
        fprintf(stderr, "cannot write output\n");
        return 2;
    }
    fclose(f);
    free(x); free(y); free(h); free(c); free(ws);
    return 0;
}
