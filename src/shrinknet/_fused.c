/* One fused step of the fast oracle (see fused.py): for every sample i and candidate j,

       out[i, j, :] = b + sum_r act(base[i, r] + dh[i, j] * w[r, j]) * gate[r] * Wt[r, :]

   i.e. the next layer's pre-activations moved by the candidate's rank-1 term, through the
   activation and the gate, into the layer after, without ever writing the (n, c, R) tensor the
   PyTorch path materialises three times. Vectorised over candidates j (glibc's libmvec supplies
   the SIMD exp / tanh under -ffast-math); exp's argument is clamped where sigmoid has saturated.

   base (n, R), dh (n, c), w (R, c), gate (R), Wt (R, S), b (S), out (n, c, S): row-major.
   kind: 0 sigmoid, 1 tanh, 2 relu. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define KERNEL(NAME, T, EXP, TANH, LIM)                                                           \
  int NAME(const T* base, const T* dh, const T* w, const T* gate, const T* Wt, const T* b, T* out, \
           int64_t n, int64_t c, int64_t R, int64_t S, int kind) {                               \
    T* acc = (T*)malloc(sizeof(T) * (size_t)(S * c + c));                                         \
    if (!acc) return 1;                                                                           \
    T* h = acc + S * c;                                                                           \
    for (int64_t i = 0; i < n; ++i) {                                                             \
      const T* di = dh + i * c;                                                                   \
      for (int64_t s = 0; s < S; ++s)                                                             \
        for (int64_t j = 0; j < c; ++j) acc[s * c + j] = b[s];                                    \
      for (int64_t r = 0; r < R; ++r) {                                                           \
        const T br = base[i * R + r], g = gate[r];                                                \
        const T* wr = w + r * c;                                                                  \
        if (g == 0) continue;                                                                     \
        if (kind == 0) {                                                                          \
          for (int64_t j = 0; j < c; ++j) {                                                       \
            T x = br + di[j] * wr[j];                                                             \
            x = x < -LIM ? -LIM : (x > LIM ? LIM : x);                                            \
            h[j] = g / (1 + EXP(-x));                                                             \
          }                                                                                       \
        } else if (kind == 1) {                                                                   \
          for (int64_t j = 0; j < c; ++j) h[j] = g * TANH(br + di[j] * wr[j]);                    \
        } else {                                                                                  \
          for (int64_t j = 0; j < c; ++j) {                                                       \
            T x = br + di[j] * wr[j];                                                             \
            h[j] = x > 0 ? g * x : 0;                                                             \
          }                                                                                       \
        }                                                                                         \
        const T* ws = Wt + r * S;                                                                 \
        for (int64_t s = 0; s < S; ++s) {                                                         \
          const T v = ws[s];                                                                      \
          T* a = acc + s * c;                                                                     \
          for (int64_t j = 0; j < c; ++j) a[j] += h[j] * v;                                       \
        }                                                                                         \
      }                                                                                           \
      T* o = out + i * c * S;                                                                     \
      for (int64_t j = 0; j < c; ++j)                                                             \
        for (int64_t s = 0; s < S; ++s) o[j * S + s] = acc[s * c + j];                           \
    }                                                                                             \
    free(acc);                                                                                    \
    return 0;                                                                                     \
  }

KERNEL(rank1_f32, float, expf, tanhf, 80.0f)
KERNEL(rank1_f64, double, exp, tanh, 700.0)

/* Only the first half, for wide next layers (left to BLAS):
   h[i, j, r] = act(base[i, r] + dh[i, j] * w[j, r]) * gate[r];  w here is (c, R), h (n, c, R). */
#define ACT(NAME, T, EXP, TANH, LIM)                                                              \
  int NAME(const T* base, const T* dh, const T* w, const T* gate, T* h, int64_t n, int64_t c,      \
           int64_t R, int kind) {                                                                 \
    for (int64_t i = 0; i < n; ++i) {                                                             \
      const T* bi = base + i * R;                                                                 \
      for (int64_t j = 0; j < c; ++j) {                                                           \
        const T d = dh[i * c + j];                                                                \
        const T* wj = w + j * R;                                                                  \
        T* o = h + (i * c + j) * R;                                                               \
        if (kind == 0) {                                                                          \
          for (int64_t r = 0; r < R; ++r) {                                                       \
            T x = bi[r] + d * wj[r];                                                              \
            x = x < -LIM ? -LIM : (x > LIM ? LIM : x);                                            \
            o[r] = gate[r] / (1 + EXP(-x));                                                       \
          }                                                                                       \
        } else if (kind == 1) {                                                                   \
          for (int64_t r = 0; r < R; ++r) o[r] = gate[r] * TANH(bi[r] + d * wj[r]);               \
        } else {                                                                                  \
          for (int64_t r = 0; r < R; ++r) {                                                       \
            T x = bi[r] + d * wj[r];                                                              \
            o[r] = x > 0 ? gate[r] * x : 0;                                                       \
          }                                                                                       \
        }                                                                                         \
      }                                                                                           \
    }                                                                                             \
    return 0;                                                                                     \
  }

ACT(act_f32, float, expf, tanhf, 80.0f)
ACT(act_f64, double, exp, tanh, 700.0)
