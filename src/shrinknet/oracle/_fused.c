/* The fast oracle's inner loop in one pass (see fused.py): for every sample i and candidate j,

       move   x = base[i, :] + dh[i, j] * w[:, j]               (the next layer's pre-activations)
       [one hidden layer on:  z = b + (act(x) * gate) @ Wt]     (when hidden >= 0; else z = x)
       out[j] += loss(z, T[i, :])                               (output activation + loss, per sample)
       out[c + j] += (dh[i, j] != 0)                            (does the candidate move anything?
                                                                 with ReLU: any unit's activation)

   so only the candidates' summed losses are written, never an (n, c, R) tensor. With a hidden
   layer, zs (when not NULL) keeps each (sample, candidate)'s outputs z between calls, in the
   kernel's own layout (n, c / lanes, S, lanes): init = 1 computes z from b and stores it; init = 0
   adds the given units' terms to the stored z (gate = their change of gain), which is how the
   oracle follows removals in the last hidden layer without recomputing every unit.

   Vectorised over candidates with GCC/Clang vector types (8 floats or 4 doubles per vector;
   AVX2 where -march=native has it, pairs of SSE registers otherwise). For the common output
   widths S is a compile-time constant (see CASES), so the S running sums stay in registers.
   float: exp and log are Cephes' single-precision polynomials (about 1 ulp); double: libm per lane.
   No -ffast-math: the range reductions below rely on the order of their operations.

   dh[i, j] = src[i, idx[j]] * f[j]: the moves are gathered from a layer's outputs (src (n, K)),
   so the caller copies nothing per call; base[i, r] likewise is base[i * ldb + cols[r]] (cols
   NULL: base[i * ldb + r]), read once per sample. base (n, R), w (R, c), gate (R), Wt (R, S), b (S),
   T (n, S): row-major; idx, f (c); c a multiple of the vector width (the caller pads);
   out (runs, 2 c) in double, runs = ceil(n / chunk), zeros on entry (sums of BLOCK samples are first
   kept in T); the totals end in its first row.
   hidden: -1 none, 0 sigmoid, 1 tanh, 2 relu (sigmoid and tanh with every gate 1 take a path without the
   product, hidden + ONES).
   mode: 0 sse identity, 1 sse sigmoid, 2 sse softmax, 3 cross-entropy sigmoid (binary, per
   output), 4 cross-entropy on logits (softmax or identity outputs). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAXS 16
#define BLOCK 64      /* samples summed in the working precision before adding to the doubles */
#define ONES 3        /* hidden + ONES: sigmoid or tanh with every gate 1 (cand_ finds that out) */

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vfi __attribute__((vector_size(32)));
typedef double vd __attribute__((vector_size(32)));
typedef int64_t vdi __attribute__((vector_size(32)));

#define SPLAT_F(a) ((vf){0} + (float)(a))
#define SPLAT_D(a) ((vd){0} + (double)(a))
#define SEL(VT, IT, m, a, b) ((VT)(((IT)(a) & (m)) | ((IT)(b) & ~(m))))

static inline vf load_f(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vd load_d(const double* p) { vd v; memcpy(&v, p, sizeof v); return v; }

/* the first m < L items of p in a zeroed vector, without reading past them */
static inline vf tail_f(const float* p, int64_t m) { vf v = {0}; memcpy(&v, p, m * sizeof(float)); return v; }
static inline vd tail_d(const double* p, int64_t m) { vd v = {0}; memcpy(&v, p, m * sizeof(double)); return v; }

/* x86 has one-instruction max / min; elsewhere a compare and a select */
#ifdef __AVX__
#define MAX_F(a, b) __builtin_ia32_maxps256(a, b)
#define MIN_F(a, b) __builtin_ia32_minps256(a, b)
#define MAX_D(a, b) __builtin_ia32_maxpd256(a, b)
#else
#define MAX_F(a, b) SEL(vf, vfi, (a) > (b), a, b)
#define MIN_F(a, b) SEL(vf, vfi, (a) < (b), a, b)
#define MAX_D(a, b) SEL(vd, vdi, (a) > (b), a, b)
#endif
static inline vf max_f(vf a, vf b) { return MAX_F(a, b); }

/* out[s] = b[s] + sum of the lanes of acc[s], s < S: the dot products of linear_ (below). On AVX,
   eight at a time through a tree of horizontal adds (9 instructions for 8 sums, not 8 x 7). */
static inline void lane_sums_f32(const vf* acc, const float* b, float* out, int S) {
  int s = 0;
#ifdef __AVX__
  for (; s + 8 <= S; s += 8) {
    const vf* a = acc + s;
    vf h01 = __builtin_ia32_haddps256(a[0], a[1]), h23 = __builtin_ia32_haddps256(a[2], a[3]);
    vf h45 = __builtin_ia32_haddps256(a[4], a[5]), h67 = __builtin_ia32_haddps256(a[6], a[7]);
    vf q0 = __builtin_ia32_haddps256(h01, h23), q1 = __builtin_ia32_haddps256(h45, h67);
    vf t = __builtin_ia32_vperm2f128_ps256(q0, q1, 0x20) + __builtin_ia32_vperm2f128_ps256(q0, q1, 0x31);
    t += load_f(b + s);
    memcpy(out + s, &t, sizeof t);
  }
#endif
  for (; s < S; ++s) {
    float t = 0;
    for (int k = 0; k < 8; ++k) t += acc[s][k];
    out[s] = b[s] + t;
  }
}
static inline void lane_sums_f64(const vd* acc, const double* b, double* out, int S) {
  for (int s = 0; s < S; ++s) out[s] = b[s] + ((acc[s][0] + acc[s][1]) + (acc[s][2] + acc[s][3]));
}
static inline vd max_d(vd a, vd b) { return MAX_D(a, b); }

/* Cephes expf: e^x = 2^n e^r, |r| <= ln2 / 2, r by a two-constant (Cody-Waite) reduction;
   n = x log2(e) rounded to nearest by adding and subtracting 1.5 * 2^23 (no -ffast-math, so the
   compiler keeps that, and n's integer value is read from the same bits).
   x[k] = e^x[k] for nb vectors in lock step, each stage for all of them before the next: one exp
   is a chain of ~20 dependent operations, and a core's out-of-order window holds only two or three
   such chains written one after another, so independent exps are interleaved in the instruction
   stream itself (sigmoid throughput 1.6x with 5 at a time). nb is a constant after inlining. */
#define UNROLL _Pragma("GCC unroll 16")
static inline __attribute__((always_inline)) void exps_f(vf* x, const int nb) {
  vf t[MAXS];
  vfi n[MAXS];
  UNROLL for (int k = 0; k < nb; ++k) x[k] = MIN_F(MAX_F(x[k], SPLAT_F(-87.0f)), SPLAT_F(88.0f));
  UNROLL for (int k = 0; k < nb; ++k) t[k] = x[k] * 1.44269504088896341f + 12582912.0f;
  UNROLL for (int k = 0; k < nb; ++k) { n[k] = (vfi)t[k] - 0x4B400000; t[k] = t[k] - 12582912.0f; }
  UNROLL for (int k = 0; k < nb; ++k) x[k] = x[k] - t[k] * 0.693359375f;
  UNROLL for (int k = 0; k < nb; ++k) x[k] = x[k] - t[k] * -2.12194440e-4f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = SPLAT_F(1.9875691500E-4f) * x[k] + 1.3981999507E-3f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 8.3334519073E-3f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 4.1665795894E-2f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 1.6666665459E-1f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 5.0000001201E-1f;
  UNROLL for (int k = 0; k < nb; ++k) t[k] = t[k] * (x[k] * x[k]) + x[k] + 1.0f;
  UNROLL for (int k = 0; k < nb; ++k) x[k] = t[k] * (vf)((n[k] + 127) << 23);
}
static inline vf exp_f(vf x) { exps_f(&x, 1); return x; }

/* Cephes logf for positive normal x: x = m 2^e, m in [sqrt(1/2), sqrt(2)). */
static inline vf log_f(vf x) {
  vfi bits = (vfi)x;
  vfi e = ((bits >> 23) & 0xff) - 126;
  vf m = (vf)((bits & 0x807fffff) | 0x3f000000);           /* [0.5, 1) */
  vfi small = m < 0.707106781186547524f;
  e += small;                                              /* true is -1 */
  m = m + SEL(vf, vfi, small, m, SPLAT_F(0.0f)) - 1.0f;
  vf fe = __builtin_convertvector(e, vf);
  vf z = m * m;
  vf y = SPLAT_F(7.0376836292E-2f);
  y = y * m - 1.1514610310E-1f;
  y = y * m + 1.1676998740E-1f;
  y = y * m - 1.2420140846E-1f;
  y = y * m + 1.4249322787E-1f;
  y = y * m - 1.6668057665E-1f;
  y = y * m + 2.0000714765E-1f;
  y = y * m - 2.4999993993E-1f;
  y = y * m + 3.3333331174E-1f;
  y = y * m * z;
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  return m + y + fe * 0.693359375f;
}

static inline vd exp_d(vd x) { for (int k = 0; k < 4; ++k) x[k] = exp(x[k]); return x; }
static inline void exps_d(vd* x, const int nb) { for (int k = 0; k < nb; ++k) x[k] = exp_d(x[k]); }
static inline vd log_d(vd x) { for (int k = 0; k < 4; ++k) x[k] = log(x[k]); return x; }

/* log(1 + e) for e in (0, 1], accurate for small e: log(u) e / (u - 1) with u = 1 + e rounded */
#define LOG1P(V, LOG, e) ({ V u_ = 1 + (e); V d_ = u_ - 1; d_ = SEL(V, __typeof__((e) < 0), d_ == 0, e, d_); \
                           LOG(u_) * ((e) / d_); })

/* z[s] += sum_r h[r] Wt[r, s]; two units per iteration (in isolation ~1.2x quicker: the loop overhead was
   a fifth of it; the whole pass over the last hidden layer 1.0-1.09x) */
#define SUMS(z, h, Wt, R, S)                                                                     \
  _Pragma("GCC unroll 2") for (int64_t r = 0; r < (R); ++r) {                                    \
    const __typeof__(h[0]) hr = (h)[r];                                                          \
    for (int s = 0; s < (S); ++s) (z)[s] += hr * (Wt)[r * (S) + s];                              \
  }
/* float32 compiles the per-sample body for the common output widths (1-4 outputs, 10 classes) with
   S a constant, so the S sums stay in registers; other widths, and float64 (on request, slower
   anyway: libm per lane), take S at run time. Each specialisation costs about a second to build. */
#define BODY(SUFFIX, S_) \
  body_##SUFFIX(base, ldb, cols, src, K, idx, f, w, gate, Wt, b, Tt, out, zs, n, c, R, S_, hidden, mode, init, h, acc, mv, bl)
#define CASE(SUFFIX, S_) case S_: BODY(SUFFIX, S_); break;
#define CASES(SUFFIX) CASE(SUFFIX, 1) CASE(SUFFIX, 2) CASE(SUFFIX, 3) CASE(SUFFIX, 4) CASE(SUFFIX, 10)

/* the rows of `width` sums that `runs` runs of samples left in out, added into its first row in run
   order (so the totals do not depend on which thread took which run) */
static void sum_runs(double* out, int64_t runs, int64_t width) {
  for (int64_t k = 1; k < runs; ++k)
    for (int64_t j = 0; j < width; ++j) out[j] += out[width * k + j];
}

/* Sigmoids divide (1 / (1 + e)): the divider is a unit of its own and keeps up with the interleaved
   exps, while the FMA pipes are spared a reciprocal's two Newton steps; the pass over the last hidden
   layer ran ~1.1x quicker than with rcpps and Newton steps, and the quotient is correctly rounded. */
#define DEFINE(T, V, VI, L, LOAD, TAIL, SPLAT, EXP, EXPS, LOG, MAX, SPECIALISE, SUFFIX)                        \
  static inline __attribute__((always_inline)) V act_##SUFFIX(V x, int kind) {                                                  \
    if (kind == 0) return 1 / (1 + EXP(-x));                                                    \
    if (kind == 1) return 1 - 2 / (1 + EXP(x + x));                                              \
    return MAX(x, SPLAT(0));                                                                     \
  }                                                                                              \
  /* per-lane loss: z[s] the S outputs (overwritten), t[s] the targets; the S exps in lock step */\
  static inline __attribute__((always_inline)) V loss_##SUFFIX(V* z, const V* t, const int S, int mode) { \
    V l = SPLAT(0);                                                                              \
    if (mode == 0) {                                                                             \
      for (int s = 0; s < S; ++s) { V d = z[s] - t[s]; l += d * d; }                             \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    if (mode == 1) {                                                                             \
      V l2 = SPLAT(0), e[MAXS];           /* two sums: half the dependency chain */             \
      UNROLL for (int s = 0; s < S; ++s) e[s] = -z[s];                                          \
      EXPS(e, S);                                                                               \
      UNROLL for (int s = 0; s < S; ++s) {                                                      \
        V d = 1 / (1 + e[s]) - t[s];                                                             \
        if (s & 1) l2 += d * d; else l += d * d;                                                \
      }                                                                                         \
      l += l2;                                                                                  \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    if (mode == 3) { /* softplus(z) - t z = max(z, 0) + log1p(e^-|z|) - t z; softplus(z) = z above 20, */\
      V e[MAXS];                                    /* as torch's (and so the literal loss) has it */\
      UNROLL for (int s = 0; s < S; ++s) e[s] = -MAX(z[s], -z[s]);                              \
      EXPS(e, S);                                                                               \
      for (int s = 0; s < S; ++s) {                                                             \
        V sp = MAX(z[s], SPLAT(0)) + LOG1P(V, LOG, e[s]);                                       \
        l += SEL(V, VI, z[s] > 20, z[s], sp) - z[s] * t[s];                                     \
      }                                                                                         \
      return l;                                                                                 \
    }                                                                                           \
    V m = z[0], sum = SPLAT(0), e[MAXS];                                                         \
    for (int s = 1; s < S; ++s) m = MAX(m, z[s]);                                                \
    UNROLL for (int s = 0; s < S; ++s) e[s] = z[s] - m;                                          \
    EXPS(e, S);                                                                                  \
    if (mode == 2) {                                                                             \
      for (int s = 0; s < S; ++s) { z[s] = e[s]; sum += z[s]; }                                  \
      V inv = 1 / sum;                                                                           \
      for (int s = 0; s < S; ++s) { V d = z[s] * inv - t[s]; l += d * d; }                       \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    V ts = SPLAT(0);                      /* -sum t (z - lse) = (sum t) lse - sum t z */         \
    for (int s = 0; s < S; ++s) { sum += e[s]; l -= z[s] * t[s]; ts += t[s]; }                  \
    return l + (m + LOG(sum)) * ts;                                                              \
  }                                                                                              \
  /* h[r] = act(bi[r] + d w[r, :]) gate[r] for sigmoid (kind 0) or tanh (1), 8 units' exps in lock  \
     step; ones: every gate is 1, so no product (kind and ones are constants after inlining; the     \
     spared product and its registers make a pass over the last hidden layer ~1.2x quicker) */     \
  static inline __attribute__((always_inline)) void smooth_##SUFFIX(V* h, const T* bi, V d, const T* w, \
                                 int64_t c, const T* gate, int64_t R, const int kind, const int ones) { \
    int64_t r = 0;                                                                               \
    for (; r + 8 <= R; r += 8) {                                                                 \
      V e[8];                                                                                    \
      UNROLL for (int k = 0; k < 8; ++k) {                                                       \
        const V x = bi[r + k] + d * LOAD(w + (r + k) * c);                                       \
        e[k] = kind ? x + x : -x;                                                                \
      }                                                                                          \
      EXPS(e, 8);                                                                                \
      UNROLL for (int k = 0; k < 8; ++k) {                                                       \
        const V a = kind ? 1 - 2 / (1 + e[k]) : 1 / (1 + e[k]);                                  \
        h[r + k] = ones ? a : a * gate[r + k];                                                   \
      }                                                                                          \
    }                                                                                            \
    for (; r < R; ++r) {                                                                         \
      const V a = act_##SUFFIX(bi[r] + d * LOAD(w + r * c), kind);                               \
      h[r] = ones ? a : a * gate[r];                                                             \
    }                                                                                            \
  }                                                                                              \
  /* h[r] = act(bi[r] + d w[r, :]) gate[r]; one loop per activation keeps its constants in registers. \
     Returns the lanes whose activations moved: for ReLU, a move that stays below 0 leaves the unit   \
     (and so the whole net) exactly as it was, which the caller needs for exact ties */             \
  static __attribute__((noinline)) VI acts_##SUFFIX(V* h, const T* bi, V d, const T* w, int64_t c,  \
                                                    const T* gate, int64_t R, int hidden) {        \
    if (hidden == 0)                                                                             \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, 0, 0);                                            \
    else if (hidden == ONES)                                                                     \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, 0, 1);                                            \
    else if (hidden == 1)                                                                        \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, 1, 0);                                            \
    else if (hidden == ONES + 1)                                                                 \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, 1, 1);                                            \
    else {                                                                                       \
      VI moved = (VI){0};                                                                        \
      for (int64_t r = 0; r < R; ++r) {                                                          \
        const V x = bi[r] + d * LOAD(w + r * c);                                                 \
        moved |= (x != bi[r]) & ((x > 0) | (bi[r] > 0));                                         \
        h[r] = MAX(x, SPLAT(0)) * gate[r];                                                       \
      }                                                                                          \
      return moved;                                                                              \
    }                                                                                            \
    return (VI)(d != 0);                                                                         \
  }                                                                                              \
  static inline __attribute__((always_inline)) void body_##SUFFIX(                               \
      const T* base, int64_t ldb, const int64_t* cols, const T* src, int64_t K, const int64_t* idx, \
      const T* f, const T* w, const T* gate, const T* Wt, const T* b, const T* Tt, double* out,  \
      V* zs, int64_t n, int64_t c, int64_t R, const int S, int hidden, int mode, int init, V* h,  \
      V* acc, VI* mv, T* bl) {                                                                   \
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {                                                  \
      const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;                                        \
      for (int64_t jb = 0; jb < c / L; ++jb) { acc[jb] = SPLAT(0); mv[jb] = (VI){0}; }           \
      for (int64_t i = i0; i < i1; ++i) {                                                        \
        const T* bi = base + i * ldb;                                                            \
        if (cols) {                             /* this sample's R columns of base, gathered once */\
          for (int64_t r = 0; r < R; ++r) bl[r] = bi[cols[r]];                                   \
          bi = bl;                                                                               \
        }                                                                                        \
        const T* row = src + i * K;                                                              \
        V t[MAXS];                                          /* this sample's targets, every lane */\
        for (int s = 0; s < S; ++s) t[s] = SPLAT(Tt[i * S + s]);                                 \
        for (int64_t j0 = 0; j0 < c; j0 += L) {                                                  \
          V d;                                                 /* gather the candidates' moves */\
          for (int k = 0; k < L; ++k) d[k] = row[idx[j0 + k]];                                   \
          d *= LOAD(f + j0);                                                                     \
          V z[MAXS];                                                                             \
          VI moved = (VI)(d != 0);                                                               \
          V* zk = zs ? zs + (i * c + j0) / L * S : NULL;    /* this block's stored outputs */    \
          if (hidden < 0) {                                                                      \
            for (int s = 0; s < S; ++s) z[s] = bi[s] + d * LOAD(w + s * c + j0);                 \
          } else {                                                                               \
            moved = acts_##SUFFIX(h, bi, d, w + j0, c, gate, R, hidden);  /* all R units, then S sums */\
            for (int s = 0; s < S; ++s) z[s] = init ? SPLAT(b[s]) : zk[s];                       \
            SUMS(z, h, Wt, R, S)                                                                 \
            if (zk)                                                                              \
              for (int s = 0; s < S; ++s) zk[s] = z[s];                                          \
          }                                                                                      \
          acc[j0 / L] += loss_##SUFFIX(z, t, S, mode);                                           \
          mv[j0 / L] |= moved;                                                                   \
        }                                                                                        \
      }                                                                                          \
      for (int64_t j = 0; j < c; ++j) {          /* a block of samples' sums into the doubles */\
        out[j] += acc[j / L][j % L];                                                             \
        out[c + j] += mv[j / L][j % L] != 0;                                                     \
      }                                                                                          \
    }                                                                                            \
  }                                                                                              \
  static int run_##SUFFIX(const T* base, int64_t ldb, const int64_t* cols, const T* src, int64_t K, \
                          const int64_t* idx, const T* f,                                        \
                          const T* w, const T* gate, const T* Wt, const T* b, const T* Tt,       \
                          double* out, V* zs, int64_t n, int64_t c, int64_t R, int64_t S,        \
                          int hidden, int mode, int init) {                                      \
    /* scratch: h (R), acc and mv (c / L each), this sample's gathered columns of base (R) */     \
    V* h = (V*)aligned_alloc(32, sizeof(V) * (size_t)(2 * R + 2 * (c / L) + 1));                 \
    if (!h) return 1;                                                                            \
    V* acc = h + R;                                                                              \
    VI* mv = (VI*)(acc + c / L);                                                                 \
    T* bl = (T*)(mv + c / L);                                                                    \
    switch (SPECIALISE ? S : 0) {                                                                \
      CASES(SUFFIX)                                                                              \
      default: BODY(SUFFIX, S);                                                                  \
    }                                                                                            \
    free(h);                                                                                     \
    return 0;                                                                                    \
  }                                                                                              \
  /* hidden + ONES where it is sigmoid or tanh and every gate is 1 (the path without the product) */ \
  static int gate_free_##SUFFIX(int hidden, const T* gate, int64_t R) {                           \
    int ones = hidden == 0 || hidden == 1;                                                       \
    for (int64_t r = 0; r < R && ones; ++r) ones = gate[r] == 1;                                 \
    return hidden + (ones ? ONES : 0);                                                           \
  }                                                                                              \
  /* the samples split in runs of `chunk` (a multiple of BLOCK) handed out to `threads` OpenMP     \
     threads as each becomes free (torch's own pool: the library is linked to the libgomp torch    \
     has loaded). A run's sums go to a row of their own, out[k * 2c ...] for run k, and the rows   \
     are added in run order at the end, so the totals do not depend on the thread count or on     \
     which thread took which run; and a thread that starts late (woken from sleep, ~0.1 ms) or     \
     runs slower (a shared machine) leaves the other the runs it has not taken, where a fixed      \
     half each had the first thread wait for the second at the join */                           \
  int cand_##SUFFIX(const T* base, int64_t ldb, const int64_t* cols, const T* src, int64_t K,   \
                    const int64_t* idx, const T* f,                                              \
                    const T* w, const T* gate, const T* Wt, const T* b, const T* Tt,             \
                    double* out, V* zs, int64_t n, int64_t c, int64_t R, int64_t S, int hidden,  \
                    int mode, int init, int threads, int64_t chunk) {                            \
    if (c % L || S < 1 || S > MAXS || (hidden < 0 && R != S) || (!init && !zs) || threads < 1    \
        || (!cols && ldb < R) || chunk < 1 || chunk % BLOCK)                                     \
      return 2;                                                                                  \
    const int64_t runs = (n + chunk - 1) / chunk;                                                \
    int rc = 0;                                                                                  \
    hidden = gate_free_##SUFFIX(hidden, gate, R);                                                \
    _Pragma("omp parallel for num_threads(threads) reduction(|:rc) schedule(dynamic, 1)")        \
    for (int64_t k = 0; k < runs; ++k) {                                                         \
      const int64_t i0 = k * chunk, m = i0 + chunk < n ? chunk : n - i0;                         \
      rc |= run_##SUFFIX(base + i0 * ldb, ldb, cols, src + i0 * K, K, idx, f, w, gate, Wt, b,     \
                         Tt + i0 * S,                                                            \
                         out + 2 * c * k, zs ? zs + i0 * (c / L) * S : NULL, m, c, R, S,         \
                         hidden, mode, init);                                                    \
    }                                                                                            \
    sum_runs(out, runs, 2 * c);                                                                  \
    return rc;                                                                                   \
  }                                                                                              \
  /* One step of the serial oracle (serial.py) in one call: every candidate of the last hidden layer \
     (b: Kb units, gates gb, feeding the outputs through Wo (S, Kb), bo) and, where Ka > 0, of the \
     layer a before it (Ka units, gates ga, feeding b through Wb (Kb, Ka)), scored through the kept \
     outputs zs as cand_ does (rows / gain: the units of b to (re)compute and their gains or changes of \
     gain, init as in cand_). Both layers' runs of samples go to the threads in one parallel region, \
     and the choice is made here: where the Python bookkeeping around two cand_ calls and the choice \
     took ~0.7 ms a step on 400-50-50-10 (on caches the kernel had just swept), now ~0.3 ms remain. \
     A layer's score of candidate j is E_j - E0 in the working precision, or exactly 0 where removing j \
     changes nothing downstream (no move, no weight to an active unit, or with ReLU no unit moved), as \
     serial.py had it; unit[l] / value[l] (l = 0 for a, 1 for b) get the first lowest score's unit and \
     the score, unit[l] = -1 where layer l has no active unit. Returns 0; 1 out of memory; 2 bad  \
     arguments; 10 + l where a score of layer l is not finite (unit[l] is then that unit). */     \
  int step_##SUFFIX(const T* z, const T* outb, int64_t Kb, const T* gb, const T* Wo, const T* bo, \
                  const T* preb, const T* outa, int64_t Ka, const T* ga, const T* Wb,             \
                  const int64_t* rows, const T* gain, int64_t nrows, V* zs, int init, int hidden, \
                  const T* Tt, int64_t n, int64_t S, int mode, int threads, int64_t chunk, double E0d, \
                  int64_t* unit, double* value) {                                                 \
    if (S < 1 || S > MAXS || threads < 1 || chunk < 1 || chunk % BLOCK || (Ka > 0 && !init && !zs) \
        || nrows < 0 || nrows > Kb)                                                               \
      return 2;                                                                                   \
    int64_t c[2] = {0, 0}, cp[2];                                                                 \
    for (int64_t k = 0; k < Ka; ++k) c[0] += ga[k] != 0;                                          \
    for (int64_t k = 0; k < Kb; ++k) c[1] += gb[k] != 0;                                          \
    for (int l = 0; l < 2; ++l) cp[l] = c[l] + (L - c[l] % L) % L;                                \
    const int64_t runs = (n + chunk - 1) / chunk, R = nrows;                                      \
    /* one block: units (cp each), moves' factors, weights (R x cp0, S x cp1), Wt (R x S), sums */ \
    const size_t ints = (size_t)(cp[0] + cp[1]), reals = (size_t)(cp[0] + cp[1] + R * cp[0] + S * cp[1] + R * S); \
    const size_t sums = (size_t)(2 * runs * (cp[0] + cp[1]));                                     \
    char* mem = malloc(ints * sizeof(int64_t) + reals * sizeof(T) + sums * sizeof(double) + 64);  \
    if (!mem) return 1;                                                                           \
    double* out[2] = {(double*)mem, (double*)mem + 2 * runs * cp[0]};                             \
    int64_t* u[2] = {(int64_t*)(mem + sums * sizeof(double)), NULL};                              \
    u[1] = u[0] + cp[0];                                                                          \
    T* f[2] = {(T*)(u[1] + cp[1]), NULL};                                                         \
    f[1] = f[0] + cp[0];                                                                          \
    T *wa = f[1] + cp[1], *wb = wa + R * cp[0], *Wt = wb + S * cp[1];                             \
    memset(out[0], 0, sums * sizeof(double));                                                     \
    for (int l = 0; l < 2; ++l) {              /* padded lanes read unit 0 and do not move */     \
      const T* g = l ? gb : ga;                                                                   \
      int64_t j = 0;                                                                              \
      for (int64_t k = 0; k < (l ? Kb : Ka); ++k)                                                 \
        if (g[k] != 0) u[l][j] = k, f[l][j++] = -1;                                               \
      for (; j < cp[l]; ++j) u[l][j] = 0, f[l][j] = 0;                                            \
    }                                                                                             \
    for (int64_t r = 0; r < R; ++r) {                                                             \
      for (int64_t j = 0; j < cp[0]; ++j) wa[r * cp[0] + j] = j < c[0] ? Wb[rows[r] * Ka + u[0][j]] : 0; \
      for (int64_t s = 0; s < S; ++s) Wt[r * S + s] = Wo[s * Kb + rows[r]];                       \
    }                                                                                             \
    for (int64_t s = 0; s < S; ++s)                                                               \
      for (int64_t j = 0; j < cp[1]; ++j) wb[s * cp[1] + j] = j < c[1] ? Wo[s * Kb + u[1][j]] : 0; \
    const int hid = gate_free_##SUFFIX(hidden, gain, R);                                          \
    /* runs of layer a first (the longer ones), then of layer b */                                \
    const int64_t na = c[0] ? runs : 0, total = na + (c[1] ? runs : 0);                           \
    int rc = 0;                                                                                   \
    _Pragma("omp parallel for num_threads(threads) reduction(|:rc) schedule(dynamic, 1)")         \
    for (int64_t k = 0; k < total; ++k) {                                                         \
      const int l = k >= na, q = l ? k - na : k;                                                  \
      const int64_t i0 = q * chunk, m = i0 + chunk < n ? chunk : n - i0;                          \
      if (l)                                                                                      \
        rc |= run_##SUFFIX(z + i0 * S, S, NULL, outb + i0 * Kb, Kb, u[1], f[1], wb, NULL, NULL, NULL, Tt + i0 * S, \
                         out[1] + 2 * cp[1] * q, NULL, m, cp[1], S, S, -1, mode, 1);              \
      else                                                                                        \
        rc |= run_##SUFFIX(preb + i0 * Kb, Kb, rows, outa + i0 * Ka, Ka, u[0], f[0], wa, gain, Wt, bo, Tt + i0 * S, \
                         out[0] + 2 * cp[0] * q, zs ? zs + i0 * (cp[0] / L) * S : NULL, m, cp[0], R, S, hid, \
                         mode, init);                                                             \
    }                                                                                             \
    const T E0 = (T)E0d;                                                                          \
    for (int l = 0; l < 2 && !rc; ++l) {                                                          \
      unit[l] = -1, value[l] = 0;                                                                 \
      const int64_t C = cp[l];                                                                    \
      double* o = out[l];                                                                         \
      sum_runs(o, c[l] ? runs : 0, 2 * C);                                                        \
      T best = 0;                                                                                 \
      for (int64_t j = 0; j < c[l]; ++j) {                                                        \
        int reach = 0;                        /* a nonzero weight to an active unit downstream */ \
        /* unchanged: E0 - E0, so 0 (NaN where E0 is not finite), as serial.py's where(still, E0, E) - E0 */ \
        if (l)                                                                                    \
          for (int64_t s = 0; s < S && !reach; ++s) reach = wb[s * C + j] != 0;                   \
        else                                                                                      \
          for (int64_t r = 0; r < Kb && !reach; ++r) reach = gb[r] != 0 && Wb[r * Ka + u[0][j]] != 0; \
        const T E = (T)o[j], sc = o[C + j] > 0 && reach ? (T)(E - E0) : (T)(E0 - E0);             \
        if (!isfinite(sc)) {                                                                      \
          unit[l] = u[l][j];                                                                      \
          rc = 10 + l;                                                                            \
          break;                                                                                  \
        }                                                                                         \
        if (unit[l] < 0 || sc < best) unit[l] = u[l][j], best = sc;                               \
      }                                                                                           \
      value[l] = best;                                                                            \
    }                                                                                             \
    free(mem);                                                                                    \
    return rc;                                                                                    \
  }                                                                                               \
  /* z (n, S) = b + h (n, R) W (S, R)^T: the output layer of a forward pass. Each sample's S dot  \
     products run over L units at a time, in registers (S a constant for the common widths); W   \
     comes with its rows padded with zeros to Rp, a multiple of L, and the last units of a row of \
     h are read into a zero-padded vector. With few outputs this is several times quicker than   \
     the BLAS call torch makes. */                                                               \
  static inline __attribute__((always_inline)) void linear_body_##SUFFIX(                        \
      const T* h, const T* W, const T* b, T* z, int64_t n, int64_t R, int64_t Rp, const int S) {  \
    const int64_t Rv = R - R % L;                                                                \
    /* units Rv..R: where R >= L, the row's last L items are read (one plain load, overlapping the \
       previous vector) against weights wl that are 0 for the units already counted. Filling a     \
       vector item by item stalls the next load (50 units took 2.5x as long as 48 on Zen 3), and   \
       a masked load of the last items 1.5x as long as this; rows shorter than L are copied */     \
    V wl[MAXS];                                                                                  \
    for (int s = 0; s < S && R >= L; ++s)                                                        \
      for (int k = 0; k < L; ++k) wl[s][k] = R - L + k >= Rv ? W[s * Rp + R - L + k] : 0;        \
    for (int64_t i = 0; i < n; ++i) {                                                            \
      const T* hi = h + i * R;                                                                   \
      V acc[MAXS];                                                                               \
      for (int s = 0; s < S; ++s) acc[s] = SPLAT(0);                                             \
      for (int64_t r = 0; r < Rv; r += L) {                                                      \
        const V x = LOAD(hi + r);                                                                \
        for (int s = 0; s < S; ++s) acc[s] += x * LOAD(W + s * Rp + r);                          \
      }                                                                                          \
      if (Rv < R) {                   /* the last units: the row's last L items, or fewer */   \
        const V x = R >= L ? LOAD(hi + R - L) : TAIL(hi + Rv, R - Rv);                           \
        for (int s = 0; s < S; ++s) acc[s] += x * (R >= L ? wl[s] : LOAD(W + s * Rp + Rv));      \
      }                                                                                          \
      lane_sums_##SUFFIX(acc, b, z + i * S, S);                                                  \
    }                                                                                            \
  }                                                                                              \
  int linear_##SUFFIX(const T* h, const T* W, const T* b, T* z, int64_t n, int64_t R, int64_t Rp,  \
                      int64_t S, int threads) {                                                  \
    if (S < 1 || S > MAXS || threads < 1 || Rp % L || Rp < R) return 2;                          \
    /* runs of 256 samples taken by the threads as each becomes free (as in cand_: a thread woken   \
       late leaves its share to the other); every sample's outputs are its own, so the result does  \
       not depend on who took which run */                                                        \
    const int64_t runs = (n + 255) / 256;                                                        \
    _Pragma("omp parallel for num_threads(threads) schedule(dynamic, 1)")                        \
    for (int64_t k = 0; k < runs; ++k) {                                                         \
      const int64_t i0 = k * 256, m = i0 + 256 < n ? 256 : n - i0;                               \
      const T* ht = h + i0 * R;                                                                  \
      T* zt = z + i0 * S;                                                                        \
      switch (SPECIALISE ? S : 0) {                                                              \
        case 1: linear_body_##SUFFIX(ht, W, b, zt, m, R, Rp, 1); break;                          \
        case 10: linear_body_##SUFFIX(ht, W, b, zt, m, R, Rp, 10); break;                        \
        default: linear_body_##SUFFIX(ht, W, b, zt, m, R, Rp, (int)S);                           \
      }                                                                                          \
    }                                                                                            \
    return 0;                                                                                    \
  }                                                                                              \
  /* the loss of outputs z (n, S) against T (n, S), summed, into out[0]; and into out[1] the      \
     samples whose first largest output is the target's first largest (accuracy, S > 1): the      \
     pruning loop's measure after every removal. Vectorised over samples: a vector holds one       \
     output of L samples (lanes past n hold z = t = 0 and are not counted). */                     \
  static inline __attribute__((always_inline)) void measure_body_##SUFFIX(                       \
      const T* z, const T* Tt, int64_t n, const int S, int mode, double* out) {                  \
    double E = 0, right = 0;                                                                     \
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {                                                  \
      V acc = SPLAT(0);                                                                          \
      for (int64_t i = i0; i < i0 + BLOCK && i < n; i += L) {                                    \
        const int64_t m = n - i < L ? n - i : L;                                                 \
        const T *zp = z + i * S, *tp = Tt + i * S;                                               \
        T zr[L * MAXS], tr[L * MAXS];                  /* the last samples, padded with zeros */   \
        if (m < L) {                                                                             \
          memset(zr, 0, sizeof zr), memset(tr, 0, sizeof tr);                                    \
          memcpy(zr, zp, m * S * sizeof(T)), memcpy(tr, tp, m * S * sizeof(T));                  \
          zp = zr, tp = tr;                                                                      \
        }                                                                                        \
        V zv[MAXS], tv[MAXS];                                                                    \
        for (int s = 0; s < S; ++s)                                                              \
          for (int k = 0; k < L; ++k) zv[s][k] = zp[k * S + s], tv[s][k] = tp[k * S + s];        \
        V bz = zv[0], bt = tv[0];                                                                \
        VI az = (VI){0}, at = (VI){0};                 /* first largest output: strictly greater */\
        for (int s = 1; s < S; ++s) {                                                            \
          VI gz = zv[s] > bz, gt = tv[s] > bt;                                                   \
          bz = SEL(V, VI, gz, zv[s], bz), az = SEL(VI, VI, gz, (VI){0} + s, az);                 \
          bt = SEL(V, VI, gt, tv[s], bt), at = SEL(VI, VI, gt, (VI){0} + s, at);                 \
        }                                                                                        \
        V l = loss_##SUFFIX(zv, tv, S, mode);                                                    \
        VI keep = (VI){0};                                                                       \
        for (int k = 0; k < L; ++k) keep[k] = k < m ? -1 : 0;                                    \
        acc += SEL(V, VI, keep, l, SPLAT(0));                                                    \
        VI hit = (az == at) & keep;                                                              \
        for (int k = 0; k < L; ++k) right += hit[k] != 0;                                        \
      }                                                                                          \
      for (int k = 0; k < L; ++k) E += acc[k];                                                   \
    }                                                                                            \
    out[0] = E, out[1] = right;                                                                  \
  }                                                                                              \
  int measure_##SUFFIX(const T* z, const T* Tt, int64_t n, int64_t S, int mode, double* out) {   \
    if (S < 1 || S > MAXS) return 2;                                                             \
    switch (SPECIALISE ? S : 0) {                                                                \
      case 1: measure_body_##SUFFIX(z, Tt, n, 1, mode, out); break;                              \
      case 10: measure_body_##SUFFIX(z, Tt, n, 10, mode, out); break;                            \
      default: measure_body_##SUFFIX(z, Tt, n, (int)S, mode, out);                               \
    }                                                                                            \
    return 0;                                                                                    \
  }

/* 1 where the kernel splits the work itself (built with OpenMP) */
int threaded(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

DEFINE(float, vf, vfi, 8, load_f, tail_f, SPLAT_F, exp_f, exps_f, log_f, max_f, 1, f32)
DEFINE(double, vd, vdi, 4, load_d, tail_d, SPLAT_D, exp_d, exps_d, log_d, max_d, 0, f64)
