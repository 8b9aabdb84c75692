/* Memory bandwidth of this machine, for the speed notes in README.md: a sum over 80 MB of f32, a
 * copy of 80 MB (a read, a write and the write's read for ownership), and the same copy with
 * streaming stores (no read for ownership). Not part of the crate or its tests.
 *
 *   gcc -O2 -mavx2 -fopenmp scripts/membw.c -o /tmp/membw && OMP_NUM_THREADS=2 /tmp/membw
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const size_t n = 20u * 1000u * 1000u; /* 80 MB of f32: bpe_large's logits */
    float *a = aligned_alloc(64, n * sizeof(float)), *b = aligned_alloc(64, n * sizeof(float));
    if (!a || !b) return 1;
    for (size_t i = 0; i < n; i++) { a[i] = (float)i * 1e-9f; b[i] = 0.0f; }
    for (int rep = 0; rep < 3; rep++) {
        double t0 = omp_get_wtime();
        float s = 0.0f;
#pragma omp parallel for reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += a[i];
        double t1 = omp_get_wtime();
#pragma omp parallel for
        for (size_t i = 0; i < n; i++) b[i] = a[i] * 2.0f;
        double t2 = omp_get_wtime();
#pragma omp parallel for
        for (size_t i = 0; i < n; i += 8)
            _mm256_stream_ps(b + i, _mm256_mul_ps(_mm256_load_ps(a + i), _mm256_set1_ps(2.0f)));
        double t3 = omp_get_wtime();
        printf("sum %.1f ms  copy %.1f ms (%.1f GB/s moved)  streaming copy %.1f ms (%.1f GB/s)  [%g]\n",
               (t1 - t0) * 1e3, (t2 - t1) * 1e3, 3.0 * n * 4 / (t2 - t1) / 1e9, (t3 - t2) * 1e3,
               2.0 * n * 4 / (t3 - t2) / 1e9, s);
    }
    return 0;
}
