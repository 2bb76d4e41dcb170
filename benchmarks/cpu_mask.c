/* Hide CPU features from a process and its children, so that every library in it picks the kernels it would
 * pick on a narrower CPU: numpy, OpenBLAS, MKL, oneDNN, torch, ONNX Runtime's MLAS and OpenVINO all ask the
 * CPUID instruction, and only some of them have a variable to force them down.
 *
 * Loaded with LD_PRELOAD (benchmarks/cpu_mask.py builds it and sets the environment). Its constructor turns on
 * CPUID faulting for the process (Linux's arch_prctl(ARCH_SET_CPUID, 0); inherited by every thread, reset by
 * execve, where the preload runs again): each CPUID then raises SIGSEGV, which the handler below answers with the
 * real CPUID's result minus the hidden feature bits, and the program goes on after the instruction. Any other
 * SIGSEGV goes to the handler the program installed (Python's faulthandler, for one): sigaction() and signal()
 * for SIGSEGV are recorded here instead of replacing this handler.
 *
 * RAVDESS_SER_CPU_MASK names what is left: AVX2 (an AVX2-only CPU such as a Zen 3 EPYC: no AVX-512, no VNNI, no
 * bfloat16, no AMX), AVX-512 (AVX-512 with VNNI but no bfloat16 or AMX, as on an Ice Lake Xeon) or SSE (x86-64-v2:
 * no AVX at all). A CPU without CPUID faulting, or an unknown name, stops the program with one line: a mask that
 * silently did nothing would file a measurement under the wrong CPU class.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Bits to clear in one CPUID leaf and subleaf's registers. */
struct hidden_bits {
    unsigned leaf, subleaf;
    unsigned eax, ebx, ecx, edx;
};

/* AVX-512's bfloat16 and fp16, AMX and AVX10 (which implies AVX-512). */
#define LEAF7_BEYOND_AVX512_EDX (BIT(22) | BIT(23) | BIT(24) | BIT(25))            /* amx_bf16, avx512_fp16, amx_tile, amx_int8 */
#define LEAF7_1_BEYOND_AVX512_EAX (BIT(5) | BIT(21))                               /* avx512_bf16, amx_fp16 */
#define LEAF7_1_BEYOND_AVX512_EDX (BIT(8) | BIT(19))                               /* amx_complex, avx10 */
/* Every AVX-512 subset, and the VEX-encoded extensions that came with or after it (AVX-VNNI, AVX-IFMA, ...). */
#define LEAF7_AVX512_EBX (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
#define LEAF7_AVX512_ECX (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))          /* vbmi, vbmi2, vnni, bitalg, vpopcntdq */
#define LEAF7_AVX512_EDX (BIT(2) | BIT(3) | BIT(8))                               /* 4vnniw, 4fmaps, vp2intersect */
#define LEAF7_1_AFTER_AVX2_EAX (BIT(4) | BIT(23))                                  /* avx_vnni, avx_ifma */
#define LEAF7_1_AFTER_AVX2_EDX (BIT(4) | BIT(5) | BIT(10))                         /* avx_vnni_int8, avx_ne_convert, avx_vnni_int16 */

static const struct hidden_bits AVX512_MASK[] = {
    {7, 0, 0, 0, 0, LEAF7_BEYOND_AVX512_EDX},
    {7, 1, LEAF7_1_BEYOND_AVX512_EAX, 0, 0, LEAF7_1_BEYOND_AVX512_EDX},
    {0},
};
static const struct hidden_bits AVX2_MASK[] = {
    {7, 0, 0, LEAF7_AVX512_EBX, LEAF7_AVX512_ECX, LEAF7_AVX512_EDX | LEAF7_BEYOND_AVX512_EDX},
    {7, 1, LEAF7_1_AFTER_AVX2_EAX | LEAF7_1_BEYOND_AVX512_EAX, 0, 0, LEAF7_1_AFTER_AVX2_EDX | LEAF7_1_BEYOND_AVX512_EDX},
    {0},
};
static const struct hidden_bits SSE_MASK[] = {
    {1, 0, 0, 0, BIT(12) | BIT(28) | BIT(29), 0},                                 /* fma, avx, f16c */
    {7, 0, 0, BIT(5) | LEAF7_AVX512_EBX, LEAF7_AVX512_ECX, LEAF7_AVX512_EDX | LEAF7_BEYOND_AVX512_EDX}, /* avx2 */
    {7, 1, LEAF7_1_AFTER_AVX2_EAX | LEAF7_1_BEYOND_AVX512_EAX, 0, 0, LEAF7_1_AFTER_AVX2_EDX | LEAF7_1_BEYOND_AVX512_EDX},
    {0},
};

static const struct hidden_bits *mask;
static struct sigaction program_action; /* what the program asked SIGSEGV to do (SIG_DFL until it asks) */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static sighandler_t (*real_signal)(int, sighandler_t);

static long set_cpuid_faulting(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void answer_cpuid(greg_t *regs) {
    unsigned leaf = (unsigned)regs[REG_RAX], subleaf = (unsigned)regs[REG_RCX], a, b, c, d;
    set_cpuid_faulting(0);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid_faulting(1);
    for (const struct hidden_bits *h = mask; h->leaf; h++) {
        if (h->leaf == leaf && h->subleaf == subleaf) {
            a &= ~h->eax, b &= ~h->ebx, c &= ~h->ecx, d &= ~h->edx;
        }
    }
    if (leaf == 0x24) a = b = c = d = 0; /* AVX10's own leaf: every mask hides AVX10 */
    /* CPUID writes the low halves and zeroes the high ones. */
    regs[REG_RAX] = a, regs[REG_RBX] = b, regs[REG_RCX] = c, regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

static void on_sigsegv(int sig, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    /* A trapped CPUID is a general protection fault (SI_KERNEL), whose instruction can be read; a page fault
     * (SEGV_MAPERR, SEGV_ACCERR) may be at an address that cannot. */
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        answer_cpuid(regs);
        return;
    }
    if (program_action.sa_flags & SA_SIGINFO) {
        program_action.sa_sigaction(sig, info, context);
    } else if (program_action.sa_handler != SIG_DFL && program_action.sa_handler != SIG_IGN) {
        program_action.sa_handler(sig);
    } else { /* the default: die of it, as without the mask */
        struct sigaction fallback = {.sa_handler = SIG_DFL};
        real_sigaction(SIGSEGV, &fallback, NULL);
        raise(SIGSEGV); /* delivered when this handler returns, as is a fault's re-execution */
    }
}

int sigaction(int sig, const struct sigaction *action, struct sigaction *old) {
    if (sig != SIGSEGV || mask == NULL) return real_sigaction(sig, action, old);
    if (old) *old = program_action;
    if (action) program_action = *action;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    if (sig != SIGSEGV || mask == NULL) return real_signal(sig, handler);
    struct sigaction action = {.sa_handler = handler, .sa_flags = SA_RESTART}, old;
    if (sigaction(sig, &action, &old) != 0) return SIG_ERR;
    return old.sa_handler;
}

__attribute__((constructor)) static void hide_cpu_features(void) {
    real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    real_signal = (sighandler_t(*)(int, sighandler_t))dlsym(RTLD_NEXT, "signal");
    const char *name = getenv("RAVDESS_SER_CPU_MASK");
    if (name == NULL) return;
    const struct hidden_bits *chosen = strcmp(name, "AVX2") == 0      ? AVX2_MASK
                                       : strcmp(name, "AVX-512") == 0 ? AVX512_MASK
                                       : strcmp(name, "SSE") == 0     ? SSE_MASK
                                                                      : NULL;
    if (chosen == NULL) {
        fprintf(stderr, "cpu_mask: RAVDESS_SER_CPU_MASK=%s is not a mask (allowed: AVX2, AVX-512, SSE)\n", name);
        _exit(2);
    }
    /* SA_ONSTACK: on a stack overflow, the alternate stack a program set up for its own handler. */
    struct sigaction handler = {.sa_sigaction = on_sigsegv, .sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK};
    sigemptyset(&handler.sa_mask);
    program_action.sa_handler = SIG_DFL;
    mask = chosen;
    if (real_sigaction(SIGSEGV, &handler, NULL) != 0 || set_cpuid_faulting(1) != 0) {
        fprintf(stderr, "cpu_mask: this CPU or kernel cannot trap CPUID (arch_prctl ARCH_SET_CPUID failed), "
                        "so RAVDESS_SER_CPU_MASK=%s cannot hide its features\n", name);
        _exit(2);
    }
}
