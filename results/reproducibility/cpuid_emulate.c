// The experiment behind results/reproducibility.md (2026-12-07), not part of the package. An LD_PRELOAD library that
// makes the CPUID instruction answer as another CPU would, for the leaves listed: it turns on Linux's CPUID faulting
// (arch_prctl ARCH_SET_CPUID; the CPU must have the cpuid_fault flag), runs the real CPUID in the SIGSEGV handler
// and changes the registers the file names. oneDNN reads the vendor and the cache sizes it blocks its kernels by
// this way. CPUID_EMU=file of lines "leaf subleaf eax ebx ecx edx" (hex; '-' keeps the real register; subleaf '*'
// any); cpuid_xeon.txt: GenuineIntel with the Xeon record's caches (L1d 48K, L1i 64K, L2 2M, L3 480M).
//   gcc -O2 -shared -fPIC -o libcpuid.so cpuid_emulate.c
//   CPUID_EMU=$PWD/cpuid_xeon.txt LD_PRELOAD=$PWD/libcpuid.so python scripts/train.py ...
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cpuid.h>
#include <asm/prctl.h>
#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif
typedef struct { unsigned leaf, sub; int anysub; long long r[4]; } rule_t;
static rule_t rules[256]; static int nrules; static int logfd = -1;
static long calls;
static void handler(int sig, siginfo_t *si, void *ctx) {
  ucontext_t *uc = ctx; greg_t *g = uc->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char *)g[REG_RIP];
  if (!(ip[0] == 0x0f && ip[1] == 0xa2)) { signal(SIGSEGV, SIG_DFL); return; }
  unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX], a, b, c, d;
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  __cpuid_count(leaf, sub, a, b, c, d);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  unsigned v[4] = {a, b, c, d};
  for (int i = 0; i < nrules; i++)
    if (rules[i].leaf == leaf && (rules[i].anysub || rules[i].sub == sub))
      for (int k = 0; k < 4; k++) if (rules[i].r[k] >= 0) v[k] = (unsigned)rules[i].r[k];
  if (logfd >= 0) { char buf[128]; int n = snprintf(buf, sizeof buf, "%x %x -> %x %x %x %x\n", leaf, sub, v[0], v[1], v[2], v[3]); write(logfd, buf, n); }
  g[REG_RAX] = v[0]; g[REG_RBX] = v[1]; g[REG_RCX] = v[2]; g[REG_RDX] = v[3];
  g[REG_RIP] += 2; calls++;
}
static long long reg(const char *s) { return s[0] == '-' ? -1 : (long long)strtoull(s, 0, 16); }
__attribute__((constructor)) static void init(void) {
  const char *f = getenv("CPUID_EMU"); if (!f) return;
  FILE *fp = fopen(f, "r"); if (!fp) { perror(f); return; }
  char l[256];
  while (fgets(l, sizeof l, fp) && nrules < 256) {
    char t[6][32]; if (l[0] == '#' || sscanf(l, "%31s %31s %31s %31s %31s %31s", t[0], t[1], t[2], t[3], t[4], t[5]) != 6) continue;
    rule_t *r = &rules[nrules++]; r->leaf = strtoul(t[0], 0, 16); r->anysub = t[1][0] == '*'; r->sub = r->anysub ? 0 : strtoul(t[1], 0, 16);
    for (int k = 0; k < 4; k++) r->r[k] = reg(t[2 + k]);
  }
  fclose(fp);
  const char *lg = getenv("CPUID_EMU_LOG"); if (lg) logfd = open(lg, 01 | 0100 | 02000, 0644);
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, 0);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) perror("arch_prctl(ARCH_SET_CPUID)");
}
