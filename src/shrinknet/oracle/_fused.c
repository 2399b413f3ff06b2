/* The fast oracle's inner loop in one pass (kernel.py loads it): for every sample i and candidate j,

       move   x = base[i, :] + dh[i, j] * w[:, j]               (the next layer's pre-activations)
       [one hidden layer on:  z = b + (act(x) * gate) @ Wt]     (hidden an activation; HIDDEN_NONE: z = x)
       out[j] += loss(z, T[i, :])                               (output activation + loss, per sample)
       out[c + j] += (dh[i, j] != 0)                            (does the candidate move anything?
                                                                 with ReLU: any unit's activation)

   so only the candidates' summed losses are written, never an (n, c, R) tensor. With a hidden
   layer, zs (when not NULL) keeps each (sample, candidate)'s outputs z between calls, in the
   kernel's own layout (n, c / lanes, S, lanes): init = 1 computes z from b and stores it; init = 0
   adds the given units' terms to the stored z (gate = their change of gain), which is how the
   oracle follows removals in the last hidden layer without recomputing every unit.

   Vectorised over candidates with GCC/Clang vector types (LANES_F32 floats or LANES_F64 doubles per
   32-byte vector: one AVX register, or a pair of 16-byte registers where AVX is not enabled). For
   the common output widths S is a compile-time constant (see CASES), so the S running sums stay in
   registers. float: exp and log are Cephes' single-precision polynomials (about 1 ulp); double: libm
   per lane. No -ffast-math: the range reductions below rely on the order of their operations.

   Built when the package is installed (setup.py), twice from this file: with -mavx2 -mfma, which
   kernel.py loads where the CPU has both, and with no -m flag, the portable build for every other
   CPU (and the only one off x86-64); each with -fopenmp where the compiler has it. The AVX2 build
   may fuse a * b + c into one rounding (FMA), so the two builds' numbers can differ in the last bits;
   within a build they do not depend on the thread count. It needs no Python symbols: kernel.py
   loads it with ctypes.

   Interface: the two long calls take one struct each (struct cand_args, struct step_args), which
   kernel.py mirrors field for field; shrinknet_constants() lists every number the two sides share
   (the ABI version, each struct's size and field offsets, BLOCK, MAXS, the lanes, the activation and
   loss-mode codes, the return codes), so Python reads them rather than keeping copies, and refuses a
   build whose ABI version or layout differs from its own. Any change to a struct, to an exported
   function's arguments or to a code's meaning takes a new SHRINKNET_ABI.

   dh[i, j] = src[i, idx[j]] * f[j]: the moves are gathered from a layer's outputs (src (n, K)),
   so the caller copies nothing per call; base[i, r] likewise is base[i * ldb + cols[r]] (cols
   NULL: base[i * ldb + r]), read once per sample. base (n, R), w (R, c), gate (R), Wt (R, S), b (S),
   T (n, S): row-major; idx, f (c); c a multiple of the vector width (the caller pads);
   out (runs, 2 c) in double, runs = ceil(n / chunk), zeros on entry (sums of BLOCK samples are first
   kept in T); the totals end in its first row.
   hidden: one of the HIDDEN_ codes (sigmoid and tanh with every gate 1 take a path without the
   product, hidden + ONES). mode: one of the MODE_ codes below. */

/* GCC notes (-Wpsabi) that a function taking or returning a 32-byte vector is called differently
   with and without AVX; every such function here is static, called only from this file as it was
   compiled, so no such call crosses the library's boundary, and the note is turned off. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the version of the interface below (structs, exported functions' arguments, codes) */
#define SHRINKNET_ABI 1

#define MAXS 16       /* the most outputs: a candidate's S running sums are kept in registers */
#define BLOCK 64      /* samples summed in the working precision before adding to the doubles */
#define LANES_F32 8   /* candidates per vector */
#define LANES_F64 4

/* the hidden layer's activation (cand_args.hidden, step_args.hidden) */
enum { HIDDEN_NONE = -1, HIDDEN_SIGMOID = 0, HIDDEN_TANH = 1, HIDDEN_RELU = 2 };
#define ONES 3        /* hidden + ONES: sigmoid or tanh with every gate 1 (cand_ finds that out) */
/* the output activation and loss (mode) */
enum {
  MODE_SSE_IDENTITY = 0,
  MODE_SSE_SIGMOID = 1,
  MODE_SSE_SOFTMAX = 2,
  MODE_CE_SIGMOID = 3,  /* binary cross-entropy per output */
  MODE_CE_LOGITS = 4    /* cross-entropy of softmax(z): softmax or identity outputs */
};
/* what the exported calls return */
enum { RC_OK = 0, RC_NO_MEMORY = 1, RC_BAD_ARGUMENTS = 2, RC_NOT_FINITE = 10 /* + the layer */ };
#ifdef _OPENMP
#define THREADED 1    /* the kernel splits its work over OpenMP threads */
#define OMP(pragma) _Pragma(pragma)
#else
#define THREADED 0
#define OMP(pragma)   /* without OpenMP, no pragma that the compiler would warn it ignores */
#endif

/* cand_f32 / cand_f64's arguments: every candidate's loss summed over the samples (see the top of
   the file). The arrays (void: float for cand_f32, double for cand_f64) are row-major and
   contiguous; pointers first, then the sizes, so the layout has no padding on any common ABI. */
struct cand_args {
  const void* base;     /* (n, ldb): the next layer's pre-activations, or with cols a wider array */
  const int64_t* cols;  /* (R) the columns of base to read, or NULL: its first R */
  const void* src;      /* (n, K): the layer's outputs that the moves are gathered from */
  const int64_t* idx;   /* (c) each candidate's column of src */
  const void* f;        /* (c) each candidate's factor (0 for padded lanes) */
  const void* w;        /* (R, c) each candidate's weights to the next layer */
  const void* gate;     /* (R) the hidden layer's gates (or changes of gain, init = 0); unused without one */
  const void* Wt;       /* (R, S) the hidden layer's weights to the outputs, transposed */
  const void* b;        /* (S) the outputs' bias */
  const void* Tt;       /* (n, S) the targets */
  double* out;          /* (runs, 2 c), zeros on entry: the sums, then the moved counts */
  void* zs;             /* the kept outputs (n, c / lanes, S, lanes), or NULL */
  int64_t ldb, K, n, c, R, S;
  int64_t chunk;        /* samples per run: a multiple of BLOCK */
  int32_t hidden;       /* a HIDDEN_ code */
  int32_t mode;         /* a MODE_ code */
  int32_t init;         /* 1: z from b (and stored); 0: this call's units added to the stored z */
  int32_t threads;
};

/* step_f32 / step_f64's arguments and results: one step of the serial oracle (see step_ below).
   Layer b is the last hidden layer, a the one before it (Ka = 0: none). */
struct step_args {
  const void* z;        /* (n, S) the outputs */
  const void* outb;     /* (n, Kb) b's outputs */
  const void* gb;       /* (Kb) b's gates */
  const void* Wo;       /* (S, Kb) the output layer's weights */
  const void* bo;       /* (S) its bias */
  const void* preb;     /* (n, Kb) b's pre-activations */
  const void* outa;     /* (n, Ka) a's outputs */
  const void* ga;       /* (Ka) a's gates */
  const void* Wb;       /* (Kb, Ka) b's weights */
  const int64_t* rows;  /* (nrows) the units of b to compute */
  const void* gain;     /* (nrows) their gains, or with init = 0 their changes of gain */
  void* zs;             /* the kept outputs for a's active units (as cand_args.zs), or NULL */
  const void* Tt;       /* (n, S) the targets */
  int64_t Kb, Ka, nrows, n, S;
  int64_t chunk;        /* samples per run: a multiple of BLOCK */
  double E0;            /* the net's E as it is */
  int32_t init, hidden, mode, threads;
  int64_t unit[2];      /* out: each layer's (a, b) chosen unit, -1 where it has no active unit */
  double value[2];      /* out: its score */
};

typedef float vf __attribute__((vector_size(LANES_F32 * sizeof(float))));
typedef int32_t vfi __attribute__((vector_size(LANES_F32 * sizeof(int32_t))));
typedef double vd __attribute__((vector_size(LANES_F64 * sizeof(double))));
typedef int64_t vdi __attribute__((vector_size(LANES_F64 * sizeof(int64_t))));

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
    for (int k = 0; k < LANES_F32; ++k) t += acc[s][k];
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
   stream itself.
   Two builds of the same stages: exps_f for an nb that is a constant after inlining, unrolled so
   that t and n live in registers; exps_f_rt for an nb known only at run time (the output widths
   without a specialisation, see CASES), in plain loops: unrolling a loop of unknown length gains
   nothing there, and leaves GCC unable to see that each t[k] is written before it is read (it warned
   at every read). UNROLL_1 / UNROLL_0: unrolled or not, for the macros that make both builds. */
#define UNROLL_1 _Pragma("GCC unroll 16")
#define UNROLL_0
#define UNROLL UNROLL_1
#define DEFINE_EXPS_F(NAME, U)                                                                   \
  static inline __attribute__((always_inline)) void NAME(vf* x, const int nb) {                  \
    vf t[MAXS];                                                                                  \
    vfi n[MAXS];                                                                                 \
    UNROLL_##U for (int k = 0; k < nb; ++k) x[k] = MIN_F(MAX_F(x[k], SPLAT_F(-87.0f)), SPLAT_F(88.0f)); \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = x[k] * 1.44269504088896341f + 12582912.0f;    \
    UNROLL_##U for (int k = 0; k < nb; ++k) { n[k] = (vfi)t[k] - 0x4B400000; t[k] = t[k] - 12582912.0f; } \
    UNROLL_##U for (int k = 0; k < nb; ++k) x[k] = x[k] - t[k] * 0.693359375f;                   \
    UNROLL_##U for (int k = 0; k < nb; ++k) x[k] = x[k] - t[k] * -2.12194440e-4f;                \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = SPLAT_F(1.9875691500E-4f) * x[k] + 1.3981999507E-3f; \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 8.3334519073E-3f;               \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 4.1665795894E-2f;               \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 1.6666665459E-1f;               \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = t[k] * x[k] + 5.0000001201E-1f;               \
    UNROLL_##U for (int k = 0; k < nb; ++k) t[k] = t[k] * (x[k] * x[k]) + x[k] + 1.0f;           \
    UNROLL_##U for (int k = 0; k < nb; ++k) x[k] = t[k] * (vf)((n[k] + 127) << 23);              \
  }
DEFINE_EXPS_F(exps_f, 1)
DEFINE_EXPS_F(exps_f_rt, 0)
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

static inline vd exp_d(vd x) { for (int k = 0; k < LANES_F64; ++k) x[k] = exp(x[k]); return x; }
static inline void exps_d(vd* x, const int nb) { for (int k = 0; k < nb; ++k) x[k] = exp_d(x[k]); }
static inline vd log_d(vd x) { for (int k = 0; k < LANES_F64; ++k) x[k] = log(x[k]); return x; }

/* log(1 + e) for e in (0, 1], accurate for small e: log(u) e / (u - 1) with u = 1 + e rounded */
#define LOG1P(V, LOG, e) ({ V u_ = 1 + (e); V d_ = u_ - 1; d_ = SEL(V, __typeof__((e) < 0), d_ == 0, e, d_); \
                           LOG(u_) * ((e) / d_); })

/* z[s] += sum_r h[r] Wt[r, s]; two units per iteration, which halves the loop's own overhead (counter,
   compare, branch) per unit */
#define SUMS(z, h, Wt, R, S)                                                                     \
  _Pragma("GCC unroll 2") for (int64_t r = 0; r < (R); ++r) {                                    \
    const __typeof__(h[0]) hr = (h)[r];                                                          \
    for (int s = 0; s < (S); ++s) (z)[s] += hr * (Wt)[r * (S) + s];                              \
  }
/* float32 compiles the per-sample body for the common output widths (1-4 outputs, 10 classes) with
   S a constant, so the S sums stay in registers; other widths, and float64 (on request, slower
   anyway: libm per lane), take S at run time (RT = 1: the loss made for that, loss_rt_). Each
   specialisation adds to the build's time. */
#define BODY(SUFFIX, S_, RT)                                                                     \
  body_##SUFFIX(base, ldb, cols, src, K, idx, f, w, gate, Wt, b, Tt, out, zs, n, c, R, S_, hidden, mode, init, h, acc, mv, bl, RT)
#define CASE(SUFFIX, S_) case S_: BODY(SUFFIX, S_, 0); break;
#define CASES(SUFFIX) CASE(SUFFIX, 1) CASE(SUFFIX, 2) CASE(SUFFIX, 3) CASE(SUFFIX, 4) CASE(SUFFIX, 10)

/* the rows of `width` sums that `runs` runs of samples left in out, added into its first row in run
   order (so the totals do not depend on which thread took which run) */
static void sum_runs(double* out, int64_t runs, int64_t width) {
  for (int64_t k = 1; k < runs; ++k)
    for (int64_t j = 0; j < width; ++j) out[j] += out[width * k + j];
}

/* per-lane loss: z[s] the S outputs (overwritten), t[s] the targets; the S exps in lock step. Made
   twice (see DEFINE): NAME = loss_<type> unrolled (U = 1) for a constant S, loss_rt_<type> in plain
   loops (U = 0) for an S known only at run time, as exps_f and exps_f_rt. */
#define DEFINE_LOSS(T, V, VI, SPLAT, EXPS, LOG, MAX, NAME, U)                                    \
  static inline __attribute__((always_inline)) V NAME(V* z, const V* t, const int S, int mode) { \
    if (S < 1) __builtin_unreachable();   /* (cand_ and measure_ check it) */                    \
    V l = SPLAT(0);                                                                              \
    if (mode == MODE_SSE_IDENTITY) {                                                             \
      for (int s = 0; s < S; ++s) { V d = z[s] - t[s]; l += d * d; }                             \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    if (mode == MODE_SSE_SIGMOID) {                                                              \
      V l2 = SPLAT(0), e[MAXS];           /* two sums: half the dependency chain */             \
      UNROLL_##U for (int s = 0; s < S; ++s) e[s] = -z[s];                                       \
      EXPS(e, S);                                                                               \
      UNROLL_##U for (int s = 0; s < S; ++s) {                                                   \
        V d = 1 / (1 + e[s]) - t[s];                                                             \
        if (s & 1) l2 += d * d; else l += d * d;                                                \
      }                                                                                         \
      l += l2;                                                                                  \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    if (mode == MODE_CE_SIGMOID) {                                                               \
      /* softplus(z) - t z = max(z, 0) + log1p(e^-|z|) - t z; softplus(z) = z above 20, as torch's \
         (and so the literal loss) has it */                                                     \
      V e[MAXS];                                                                                 \
      UNROLL_##U for (int s = 0; s < S; ++s) e[s] = -MAX(z[s], -z[s]);                           \
      EXPS(e, S);                                                                               \
      for (int s = 0; s < S; ++s) {                                                             \
        V sp = MAX(z[s], SPLAT(0)) + LOG1P(V, LOG, e[s]);                                       \
        l += SEL(V, VI, z[s] > 20, z[s], sp) - z[s] * t[s];                                     \
      }                                                                                         \
      return l;                                                                                 \
    }                                                                                           \
    V m = z[0], sum = SPLAT(0), e[MAXS];                                                         \
    for (int s = 1; s < S; ++s) m = MAX(m, z[s]);                                                \
    UNROLL_##U for (int s = 0; s < S; ++s) e[s] = z[s] - m;                                      \
    EXPS(e, S);                                                                                  \
    if (mode == MODE_SSE_SOFTMAX) {                                                              \
      for (int s = 0; s < S; ++s) { z[s] = e[s]; sum += z[s]; }                                  \
      V inv = 1 / sum;                                                                           \
      for (int s = 0; s < S; ++s) { V d = z[s] * inv - t[s]; l += d * d; }                       \
      return l * (T)0.5;                                                                         \
    }                                                                                            \
    V ts = SPLAT(0);                      /* -sum t (z - lse) = (sum t) lse - sum t z */         \
    for (int s = 0; s < S; ++s) { sum += e[s]; l -= z[s] * t[s]; ts += t[s]; }                  \
    return l + (m + LOG(sum)) * ts;                                                              \
  }

/* Sigmoids divide (1 / (1 + e)): the divider is a unit of its own and keeps up with the interleaved
   exps, while the FMA pipes are spared a reciprocal's two Newton steps (rcpps and Newton steps were
   slower), and the quotient is correctly rounded. */
#define DEFINE(T, V, VI, L, LOAD, TAIL, SPLAT, EXP, EXPS, EXPS_RT, LOG, MAX, SPECIALISE, SUFFIX) \
  static inline __attribute__((always_inline)) V act_##SUFFIX(V x, int kind) {                                                  \
    if (kind == HIDDEN_SIGMOID) return 1 / (1 + EXP(-x));                                        \
    if (kind == HIDDEN_TANH) return 1 - 2 / (1 + EXP(x + x));                                    \
    return MAX(x, SPLAT(0));                                                                     \
  }                                                                                              \
  DEFINE_LOSS(T, V, VI, SPLAT, EXPS, LOG, MAX, loss_##SUFFIX, 1)                                 \
  DEFINE_LOSS(T, V, VI, SPLAT, EXPS_RT, LOG, MAX, loss_rt_##SUFFIX, 0)                           \
  /* h[r] = act(bi[r] + d w[r, :]) gate[r] for sigmoid or tanh (kind), 8 units' exps in lock step; \
     ones: every gate is 1, so no product (kind and ones are constants after inlining; the spared \
     product frees its registers too) */                                                         \
  static inline __attribute__((always_inline)) void smooth_##SUFFIX(V* h, const T* bi, V d, const T* w, \
                                 int64_t c, const T* gate, int64_t R, const int kind, const int ones) { \
    int64_t r = 0;                                                                               \
    for (; r + 8 <= R; r += 8) {                                                                 \
      V e[8];                                                                                    \
      UNROLL for (int k = 0; k < 8; ++k) {                                                       \
        const V x = bi[r + k] + d * LOAD(w + (r + k) * c);                                       \
        e[k] = kind == HIDDEN_TANH ? x + x : -x;                                                 \
      }                                                                                          \
      EXPS(e, 8);                                                                                \
      UNROLL for (int k = 0; k < 8; ++k) {                                                       \
        const V a = kind == HIDDEN_TANH ? 1 - 2 / (1 + e[k]) : 1 / (1 + e[k]);                   \
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
    if (hidden == HIDDEN_SIGMOID)                                                                \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, HIDDEN_SIGMOID, 0);                               \
    else if (hidden == HIDDEN_SIGMOID + ONES)                                                    \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, HIDDEN_SIGMOID, 1);                               \
    else if (hidden == HIDDEN_TANH)                                                              \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, HIDDEN_TANH, 0);                                  \
    else if (hidden == HIDDEN_TANH + ONES)                                                       \
      smooth_##SUFFIX(h, bi, d, w, c, gate, R, HIDDEN_TANH, 1);                                  \
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
      V* acc, VI* mv, T* bl, const int rt) {                                                     \
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
          if (hidden == HIDDEN_NONE) {                                                           \
            for (int s = 0; s < S; ++s) z[s] = bi[s] + d * LOAD(w + s * c + j0);                 \
          } else {                                                                               \
            moved = acts_##SUFFIX(h, bi, d, w + j0, c, gate, R, hidden);  /* all R units, then S sums */\
            for (int s = 0; s < S; ++s) z[s] = init ? SPLAT(b[s]) : zk[s];                       \
            SUMS(z, h, Wt, R, S)                                                                 \
            if (zk)                                                                              \
              for (int s = 0; s < S; ++s) zk[s] = z[s];                                          \
          }                                                                                      \
          acc[j0 / L] += rt ? loss_rt_##SUFFIX(z, t, S, mode) : loss_##SUFFIX(z, t, S, mode);    \
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
    if (!h) return RC_NO_MEMORY;                                                                 \
    V* acc = h + R;                                                                              \
    VI* mv = (VI*)(acc + c / L);                                                                 \
    T* bl = (T*)(mv + c / L);                                                                    \
    switch (SPECIALISE ? S : 0) {                                                                \
      CASES(SUFFIX)                                                                              \
      default: BODY(SUFFIX, S, 1);                                                               \
    }                                                                                            \
    free(h);                                                                                     \
    return RC_OK;                                                                                \
  }                                                                                              \
  /* hidden + ONES where it is sigmoid or tanh and every gate is 1 (the path without the product) */ \
  static int gate_free_##SUFFIX(int hidden, const T* gate, int64_t R) {                           \
    int ones = hidden == HIDDEN_SIGMOID || hidden == HIDDEN_TANH;                                \
    for (int64_t r = 0; r < R && ones; ++r) ones = gate[r] == 1;                                 \
    return hidden + (ones ? ONES : 0);                                                           \
  }                                                                                              \
  /* the samples split in runs of `chunk` (a multiple of BLOCK) handed out to `threads` OpenMP     \
     threads as each becomes free (torch's own pool: the library is linked to the libgomp torch    \
     has loaded). A run's sums go to a row of their own, out[k * 2c ...] for run k, and the rows   \
     are added in run order at the end, so the totals do not depend on the thread count or on     \
     which thread took which run; and a thread that starts late (woken from sleep) or            \
     runs slower (a shared machine) leaves the other the runs it has not taken, where a fixed      \
     half each had the first thread wait for the second at the join */                           \
  int cand_##SUFFIX(const struct cand_args* a) {                                                 \
    const T *base = a->base, *src = a->src, *f = a->f, *w = a->w, *gate = a->gate, *Wt = a->Wt;  \
    const T *b = a->b, *Tt = a->Tt;                                                              \
    const int64_t *cols = a->cols, *idx = a->idx;                                                \
    double* out = a->out;                                                                        \
    V* zs = a->zs;                                                                               \
    const int64_t ldb = a->ldb, K = a->K, n = a->n, c = a->c, R = a->R, S = a->S, chunk = a->chunk; \
    const int mode = a->mode, init = a->init, threads = a->threads;                              \
    int hidden = a->hidden;                                                                      \
    if (c % L || S < 1 || S > MAXS || hidden < HIDDEN_NONE || hidden > HIDDEN_RELU               \
        || (hidden == HIDDEN_NONE && R != S) || mode < MODE_SSE_IDENTITY || mode > MODE_CE_LOGITS \
        || (!init && !zs) || threads < 1 || (!cols && ldb < R) || chunk < 1 || chunk % BLOCK)    \
      return RC_BAD_ARGUMENTS;                                                                   \
    const int64_t runs = (n + chunk - 1) / chunk;                                                \
    int rc = 0;                                                                                  \
    hidden = gate_free_##SUFFIX(hidden, gate, R);                                                \
    OMP("omp parallel for num_threads(threads) reduction(|:rc) schedule(dynamic, 1)")            \
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
  /* One step of the serial oracle (stepper.py) in one call: every candidate of the last hidden layer \
     (b: Kb units, gates gb, feeding the outputs through Wo (S, Kb), bo) and, where Ka > 0, of the \
     layer a before it (Ka units, gates ga, feeding b through Wb (Kb, Ka)), scored through the kept \
     outputs zs as cand_ does (rows / gain: the units of b to (re)compute and their gains or changes of \
     gain, init as in cand_). Both layers' runs of samples go to the threads in one parallel region, \
     and the choice is made here: on small nets the Python bookkeeping around two cand_ calls and \
     the choice cost as much as the kernel's own work.                                           \
     A layer's score of candidate j is E_j - E0 in the working precision, or exactly 0 where removing j \
     changes nothing downstream (no move, no weight to an active unit, or with ReLU no unit moved), as \
     the stepper had it; unit[l] / value[l] (l = 0 for a, 1 for b) get the first lowest score's unit \
     and the score, unit[l] = -1 where layer l has no active unit. Returns RC_OK, RC_NO_MEMORY,  \
     RC_BAD_ARGUMENTS, or RC_NOT_FINITE + l where a score of layer l is not finite (unit[l] is then \
     that unit). */                                                                              \
  int step_##SUFFIX(struct step_args* a) {                                                       \
    const T *z = a->z, *outb = a->outb, *gb = a->gb, *Wo = a->Wo, *bo = a->bo, *preb = a->preb;  \
    const T *outa = a->outa, *ga = a->ga, *Wb = a->Wb, *gain = a->gain, *Tt = a->Tt;             \
    const int64_t* rows = a->rows;                                                               \
    V* zs = a->zs;                                                                               \
    const int64_t Kb = a->Kb, Ka = a->Ka, nrows = a->nrows, n = a->n, S = a->S, chunk = a->chunk; \
    const int init = a->init, hidden = a->hidden, mode = a->mode, threads = a->threads;          \
    const double E0d = a->E0;                                                                    \
    int64_t* unit = a->unit;                                                                     \
    double* value = a->value;                                                                    \
    if (S < 1 || S > MAXS || threads < 1 || chunk < 1 || chunk % BLOCK || (Ka > 0 && !init && !zs) \
        || nrows < 0 || nrows > Kb || (Ka > 0 && (hidden < HIDDEN_SIGMOID || hidden > HIDDEN_RELU)) \
        || mode < MODE_SSE_IDENTITY || mode > MODE_CE_LOGITS)                                    \
      return RC_BAD_ARGUMENTS;                                                                   \
    int64_t c[2] = {0, 0}, cp[2];                                                                 \
    for (int64_t k = 0; k < Ka; ++k) c[0] += ga[k] != 0;                                          \
    for (int64_t k = 0; k < Kb; ++k) c[1] += gb[k] != 0;                                          \
    for (int l = 0; l < 2; ++l) cp[l] = c[l] + (L - c[l] % L) % L;                                \
    const int64_t runs = (n + chunk - 1) / chunk, R = nrows;                                      \
    /* one block: units (cp each), moves' factors, weights (R x cp0, S x cp1), Wt (R x S), sums */ \
    const size_t ints = (size_t)(cp[0] + cp[1]), reals = (size_t)(cp[0] + cp[1] + R * cp[0] + S * cp[1] + R * S); \
    const size_t sums = (size_t)(2 * runs * (cp[0] + cp[1]));                                     \
    char* mem = malloc(ints * sizeof(int64_t) + reals * sizeof(T) + sums * sizeof(double) + 64);  \
    if (!mem) return RC_NO_MEMORY;                                                               \
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
    OMP("omp parallel for num_threads(threads) reduction(|:rc) schedule(dynamic, 1)")            \
    for (int64_t k = 0; k < total; ++k) {                                                         \
      const int l = k >= na, q = l ? k - na : k;                                                  \
      const int64_t i0 = q * chunk, m = i0 + chunk < n ? chunk : n - i0;                          \
      if (l)                                                                                      \
        rc |= run_##SUFFIX(z + i0 * S, S, NULL, outb + i0 * Kb, Kb, u[1], f[1], wb, NULL, NULL, NULL, Tt + i0 * S, \
                         out[1] + 2 * cp[1] * q, NULL, m, cp[1], S, S, HIDDEN_NONE, mode, 1);    \
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
        /* unchanged: E0 - E0, so 0 (NaN where E0 is not finite), as where(still, E0, E) - E0 */ \
        if (l)                                                                                    \
          for (int64_t s = 0; s < S && !reach; ++s) reach = wb[s * C + j] != 0;                   \
        else                                                                                      \
          for (int64_t r = 0; r < Kb && !reach; ++r) reach = gb[r] != 0 && Wb[r * Ka + u[0][j]] != 0; \
        const T E = (T)o[j], sc = o[C + j] > 0 && reach ? (T)(E - E0) : (T)(E0 - E0);             \
        if (!isfinite(sc)) {                                                                      \
          unit[l] = u[l][j];                                                                      \
          rc = RC_NOT_FINITE + l;                                                                \
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
     h are read into a zero-padded vector. With few outputs this is quicker than the BLAS call   \
     torch makes, which has too thin a matrix to gain from its blocking. */                      \
  static inline __attribute__((always_inline)) void linear_body_##SUFFIX(                        \
      const T* h, const T* W, const T* b, T* z, int64_t n, int64_t R, int64_t Rp, const int S) {  \
    const int64_t Rv = R - R % L;                                                                \
    /* units Rv..R: where R >= L, the row's last L items are read (one plain load, overlapping the \
       previous vector) against weights wl that are 0 for the units already counted. Filling a     \
       vector item by item stalls the next load (a store-forwarding stall), and a masked load of \
       the last items was slower than this; rows shorter than L are copied */                    \
    V wl[MAXS] = {};                                                                             \
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
    if (S < 1 || S > MAXS || threads < 1 || Rp % L || Rp < R) return RC_BAD_ARGUMENTS;           \
    /* runs of 256 samples taken by the threads as each becomes free (as in cand_: a thread woken   \
       late leaves its share to the other); every sample's outputs are its own, so the result does  \
       not depend on who took which run */                                                        \
    const int64_t runs = (n + 255) / 256;                                                        \
    OMP("omp parallel for num_threads(threads) schedule(dynamic, 1)")                            \
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
    return RC_OK;                                                                                \
  }                                                                                              \
  /* the loss of outputs z (n, S) against T (n, S), summed, into out[0]; and into out[1] the      \
     samples whose first largest output is the target's first largest (accuracy, S > 1): the      \
     pruning loop's measure after every removal. Vectorised over samples: a vector holds one       \
     output of L samples (lanes past n hold z = t = 0 and are not counted). */                     \
  static inline __attribute__((always_inline)) void measure_body_##SUFFIX(                       \
      const T* z, const T* Tt, int64_t n, const int S, int mode, double* out, const int rt) {    \
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
        V l = rt ? loss_rt_##SUFFIX(zv, tv, S, mode) : loss_##SUFFIX(zv, tv, S, mode);           \
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
    if (S < 1 || S > MAXS || mode < MODE_SSE_IDENTITY || mode > MODE_CE_LOGITS)                  \
      return RC_BAD_ARGUMENTS;                                                                   \
    switch (SPECIALISE ? S : 0) {                                                                \
      case 1: measure_body_##SUFFIX(z, Tt, n, 1, mode, out, 0); break;                           \
      case 10: measure_body_##SUFFIX(z, Tt, n, 10, mode, out, 0); break;                         \
      default: measure_body_##SUFFIX(z, Tt, n, (int)S, mode, out, 1);                            \
    }                                                                                            \
    return RC_OK;                                                                                \
  }

DEFINE(float, vf, vfi, LANES_F32, load_f, tail_f, SPLAT_F, exp_f, exps_f, exps_f_rt, log_f, max_f, 1, f32)
DEFINE(double, vd, vdi, LANES_F64, load_d, tail_d, SPLAT_D, exp_d, exps_d, exps_d, log_d, max_d, 0, f64)

/* 1 where the kernel splits the work itself (built with OpenMP) */
int threaded(void) { return THREADED; }

/* The numbers Python needs, by their C names, so that it keeps no copy: sizes and codes, and each
   struct's size and field offsets, which kernel.py compares with its ctypes mirrors. */
struct shrinknet_constant {
  const char* name;
  int64_t value;
};
#define CONSTANT(x) {#x, (int64_t)(x)}
#define SIZE(s) {"sizeof(" #s ")", (int64_t)sizeof(struct s)}
#define FIELD(s, f) {#s "." #f, (int64_t)offsetof(struct s, f)}
static const struct shrinknet_constant constants[] = {
    CONSTANT(SHRINKNET_ABI), CONSTANT(THREADED), CONSTANT(MAXS), CONSTANT(BLOCK),
    CONSTANT(LANES_F32), CONSTANT(LANES_F64),
    CONSTANT(HIDDEN_NONE), CONSTANT(HIDDEN_SIGMOID), CONSTANT(HIDDEN_TANH), CONSTANT(HIDDEN_RELU),
    CONSTANT(MODE_SSE_IDENTITY), CONSTANT(MODE_SSE_SIGMOID), CONSTANT(MODE_SSE_SOFTMAX),
    CONSTANT(MODE_CE_SIGMOID), CONSTANT(MODE_CE_LOGITS),
    CONSTANT(RC_OK), CONSTANT(RC_NO_MEMORY), CONSTANT(RC_BAD_ARGUMENTS), CONSTANT(RC_NOT_FINITE),
    SIZE(cand_args),
    FIELD(cand_args, base), FIELD(cand_args, cols), FIELD(cand_args, src), FIELD(cand_args, idx),
    FIELD(cand_args, f), FIELD(cand_args, w), FIELD(cand_args, gate), FIELD(cand_args, Wt),
    FIELD(cand_args, b), FIELD(cand_args, Tt), FIELD(cand_args, out), FIELD(cand_args, zs),
    FIELD(cand_args, ldb), FIELD(cand_args, K), FIELD(cand_args, n), FIELD(cand_args, c),
    FIELD(cand_args, R), FIELD(cand_args, S), FIELD(cand_args, chunk), FIELD(cand_args, hidden),
    FIELD(cand_args, mode), FIELD(cand_args, init), FIELD(cand_args, threads),
    SIZE(step_args),
    FIELD(step_args, z), FIELD(step_args, outb), FIELD(step_args, gb), FIELD(step_args, Wo),
    FIELD(step_args, bo), FIELD(step_args, preb), FIELD(step_args, outa), FIELD(step_args, ga),
    FIELD(step_args, Wb), FIELD(step_args, rows), FIELD(step_args, gain), FIELD(step_args, zs),
    FIELD(step_args, Tt), FIELD(step_args, Kb), FIELD(step_args, Ka), FIELD(step_args, nrows),
    FIELD(step_args, n), FIELD(step_args, S), FIELD(step_args, chunk), FIELD(step_args, E0),
    FIELD(step_args, init), FIELD(step_args, hidden), FIELD(step_args, mode),
    FIELD(step_args, threads), FIELD(step_args, unit), FIELD(step_args, value),
};

/* SHRINKNET_ABI on its own, readable before anything else is trusted */
int64_t shrinknet_abi(void) { return SHRINKNET_ABI; }

/* the table above and its length */
const struct shrinknet_constant* shrinknet_constants(int64_t* count) {
  *count = (int64_t)(sizeof constants / sizeof constants[0]);
  return constants;
}
