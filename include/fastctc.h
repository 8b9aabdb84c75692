/* fastctc C ABI: CTC loss and gradients on the CPU. See src/ffi.rs for the full contract. */
#ifndef FASTCTC_H
#define FASTCTC_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t blank;          /* blank class, 0..alphabet_size */
    int32_t input_kind;     /* 0: logits, 1: log-probabilities */
    int32_t reduction;      /* 0: none, 1: sum, 2: mean (PyTorch's) */
    int32_t zero_infinity;  /* non-zero: infinite losses become 0 with zero gradients */
    int32_t parallel;       /* non-zero: sequences on the global thread pool */
} FastctcOptions;

enum {
    FASTCTC_OK = 0,
    FASTCTC_NULL_POINTER = 1,
    FASTCTC_INVALID_VALUE = 2,
    FASTCTC_NON_FINITE = 3,
    FASTCTC_OVERFLOW = 4,
    FASTCTC_INTERNAL = 5
};

/* activations: time-major (T, B, V) contiguous; gradients: NULL or the same shape; labels concatenated. */
int32_t fastctc_compute_f32(const float *activations, float *gradients, const int32_t *flat_labels,
                            const int32_t *label_lengths, const int32_t *input_lengths, int32_t max_time,
                            int32_t alphabet_size, int32_t minibatch, float *costs,
                            const FastctcOptions *options);
int32_t fastctc_compute_f64(const double *activations, double *gradients, const int32_t *flat_labels,
                            const int32_t *label_lengths, const int32_t *input_lengths, int32_t max_time,
                            int32_t alphabet_size, int32_t minibatch, double *costs,
                            const FastctcOptions *options);
const char *fastctc_status_string(int32_t status);

#ifdef __cplusplus
}
#endif
#endif
