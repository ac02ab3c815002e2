/* The LSTM cell's pointwise math after the step's GEMMs, in one pass, with eager PyTorch's bits.
 *
 * Built on first use by elmo_core/fused_cell.py (cc -O2 -mavx2 -mfma -ffp-contract=off; no
 * PyTorch headers) and called through ctypes. The eager step (elmo_core/lstm.py, _run_in_place)
 * makes a dozen passes over the step's gates and cell state, one PyTorch kernel each; this file
 * makes one, and computes every value exactly as those kernels do on an AVX2/AVX-512 CPU:
 * sigmoid(z) = 1 / (1 + exp(-z)) with exp by SLEEF's xexpf (the routine behind PyTorch's
 * vectorised exp: the same reduction, polynomial and fused multiply-adds), and each other
 * operation rounded where PyTorch's op rounds it. fused_cell.py checks the bits against PyTorch
 * when it loads the library and does not use it if any differs.
 *
 * The candidate block of the gates arrives doubled, so tanh(x) = 2 sigmoid(2x) - 1 for both tanh.
 */
#if !defined(__AVX2__) || !defined(__FMA__)
#error "needs AVX2 and FMA (cc -mavx2 -mfma)"
#endif
#include <immintrin.h>
#include <stdint.h>

#define SPLAT _mm256_set1_ps

/* SLEEF's xexpf (sleefsimdsp.c, 1.0 ulp), as PyTorch's AVX2 and AVX-512 builds run it. */
static inline __m256 sleef_expf(__m256 d) {
    __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(d, SPLAT(1.442695040888963407359924681001892137426645954152985934135449406931f)));
    __m256 qf = _mm256_cvtepi32_ps(q);
    __m256 s = _mm256_fmadd_ps(qf, SPLAT(-0.693145751953125f), d);
    s = _mm256_fmadd_ps(qf, SPLAT(-1.428606765330187045e-06f), s);
    __m256 u = SPLAT(0.000198527617612853646278381f);
    u = _mm256_fmadd_ps(u, s, SPLAT(0.00139304355252534151077271f));
    u = _mm256_fmadd_ps(u, s, SPLAT(0.00833336077630519866943359f));
    u = _mm256_fmadd_ps(u, s, SPLAT(0.0416664853692054748535156f));
    u = _mm256_fmadd_ps(u, s, SPLAT(0.166666671633720397949219f));
    u = _mm256_fmadd_ps(u, s, SPLAT(0.5f));
    u = _mm256_add_ps(SPLAT(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(s, s), u, s));
    /* ldexp in two halves of q, so that 2^q may leave float's exponent range */
    __m256i half = _mm256_srai_epi32(q, 1);
    __m256 scale_a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(0x7f)), 23));
    __m256 scale_b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(q, half), _mm256_set1_epi32(0x7f)), 23));
    u = _mm256_mul_ps(_mm256_mul_ps(u, scale_a), scale_b);
    u = _mm256_andnot_ps(_mm256_cmp_ps(d, SPLAT(-104.0f), _CMP_LT_OQ), u);
    return _mm256_blendv_ps(u, SPLAT(__builtin_inff()), _mm256_cmp_ps(SPLAT(100.0f), d, _CMP_LT_OQ));
}

/* PyTorch's vectorised sigmoid: (0 - z).exp(), + 1, reciprocal (a division). */
static inline __m256 sigmoid(__m256 z) {
    __m256 e = sleef_expf(_mm256_sub_ps(_mm256_setzero_ps(), z));
    return _mm256_div_ps(SPLAT(1.0f), _mm256_add_ps(e, SPLAT(1.0f)));
}

/* For rows r < n: gates (4 * cell, candidate doubled) at gates + r * gate_stride, only read; c
 * updated in place (clipped to [-bound, bound] when clip), p = tanh(c) * o. cell % 8 == 0
 * (fused_cell.py asks for a multiple of 16 or 32: PyTorch's own loops, see CHUNK_FLOATS there).
 * fused_product: c * f + i * j with one rounding for the sum of the product (an FMA), as
 * PyTorch's addcmul_ is compiled on some builds; otherwise two roundings. */
void elmo_lstm_cell(const float *gates, int64_t gate_stride, float *c, int64_t c_stride, float *p, int64_t p_stride,
                    int64_t n, int64_t cell, int clip, float bound, int fused_product) {
    const __m256 one = SPLAT(1.0f), two = SPLAT(2.0f), hi = SPLAT(bound), lo = SPLAT(-bound);
    for (int64_t r = 0; r < n; ++r) {
        const float *g = gates + r * gate_stride;
        float *cr = c + r * c_stride, *pr = p + r * p_stride;
        for (int64_t k = 0; k < cell; k += 8) {
            __m256 i = sigmoid(_mm256_loadu_ps(g + k));
            __m256 j = _mm256_sub_ps(_mm256_mul_ps(sigmoid(_mm256_loadu_ps(g + cell + k)), two), one);
            __m256 f = sigmoid(_mm256_loadu_ps(g + 2 * cell + k));
            __m256 o = sigmoid(_mm256_loadu_ps(g + 3 * cell + k));
            __m256 cf = _mm256_mul_ps(_mm256_loadu_ps(cr + k), f);
            __m256 c_new = fused_product ? _mm256_fmadd_ps(i, j, cf) : _mm256_add_ps(cf, _mm256_mul_ps(i, j));
            if (clip) c_new = _mm256_min_ps(hi, _mm256_max_ps(lo, c_new)); /* a NaN stays NaN, as with clamp_ */
            _mm256_storeu_ps(cr + k, c_new);
            __m256 t = _mm256_sub_ps(_mm256_mul_ps(sigmoid(_mm256_mul_ps(c_new, two)), two), one);
            _mm256_storeu_ps(pr + k, _mm256_mul_ps(t, o));
        }
    }
}
