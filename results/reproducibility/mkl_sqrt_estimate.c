// The experiment behind results/reproducibility.md (2026-12-07), not part of the package. An LD_PRELOAD library that
// takes the place of MKL's vmsSqrt/vsSqrt (libtorch_cpu calls them through its PLT): the algorithm read from the
// disassembly of MKL 2024.2's compatible-branch kernel (mkl_vml_kernel_sSqrt_EXHAynn: an RSQRTPS estimate y, then
// h = y*0.5, s = x*y, e = 0.5 - s*h, s1 = s*e + s, h1 = h*e + h, r = x - s1*s1, result r*h1 + s1, no FMA), with the
// estimate from this CPU's RSQRTPS (VMS_SQRT=hw: bit-identical to MKL on 10 million inputs), from the table model of
// Intel's RSQRTPS that the Bochs emulator uses (VMS_SQRT=intel: 1/sqrt(1.m) for the top 10 bits of the mantissa
// and a trailing 1, rounded to a multiple of 2^-13, computed here rather than tabled), or the correctly rounded root
// (VMS_SQRT=exact). Build and use:
//   gcc -O2 -fPIC -shared -ffp-contract=off -o libmklsqrt.so mkl_sqrt_estimate.c -lm
//   VMS_SQRT=intel LD_PRELOAD=$PWD/libmklsqrt.so python scripts/train.py ...
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xmmintrin.h>
static int mode = -1;
static uint16_t t0[1024], t1[1024];
static uint16_t entry(int idx, int odd) {
  double m = 1.0 + (2.0 * idx + 1.0) / 2048.0;
  double v = 1.0 / sqrt(odd ? m : 2.0 * m);
  double q = nearbyint(v * 8192.0);
  double frac = q / 4096.0 - 1.0;
  return (uint16_t)(((uint32_t)nearbyint(frac * 8388608.0)) >> 8);
}
static void init(void) {
  const char *m = getenv("VMS_SQRT");
  mode = !m || !strcmp(m, "hw") ? 0 : !strcmp(m, "intel") ? 1 : 2;
  for (int i = 0; i < 1024; i++) { t0[i] = entry(i, 0); t1[i] = entry(i, 1); }
  fprintf(stderr, "vmsSqrt interposed: mode %d\n", mode);
}
static inline float bits2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f2bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float est(float x) {
  if (mode == 0) return _mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(x)));
  uint32_t u = f2bits(x); int e = (u >> 23) & 0xff; uint32_t f = u & 0x7fffff;
  const uint16_t *t = (e & 1) ? t1 : t0;
  int re = 0x7E - ((e - 0x7F) >> 1);
  return bits2f(((uint32_t)re << 23) | ((uint32_t)t[f >> 13] << 8));
}
static void sq(long n, const float *a, float *r) {
  if (mode < 0) init();
  for (long i = 0; i < n; i++) {
    float x = a[i]; uint32_t u = f2bits(x);
    if (mode == 2 || (int32_t)(u + 0x7f800000u) > (int32_t)0xfefff000u) { r[i] = sqrtf(x); continue; }
    volatile float y = est(x);
    float s = x * y, h = y * 0.5f;
    float e = 0.5f - s * h;
    float s1 = s * e + s, h1 = h * e + h;
    float rr = x - s1 * s1;
    r[i] = rr * h1 + s1;
  }
}
void vmsSqrt(const int n, const float *a, float *r, long long m) { sq(n, a, r); }
void vsSqrt(const int n, const float *a, float *r) { sq(n, a, r); }
