/* Bare-metal start-up for running an lstmgen self-test as Cortex-M firmware under qemu-system-arm
 * with semihosting (newlib's librdimon: printf and the exit status go to the host).
 * Also a SysTick-based clock for the self-test (SELFTEST_CLOCK=fw_clock) and a calibration loop of a
 * known instruction count, so that ticks convert to instructions when qemu runs with -icount.
 * Used by tests/test_embedded.py only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern uint32_t fw_data_start, fw_data_end, fw_data_load, fw_bss_start, fw_bss_end, fw_stack_top;

uint32_t fw_clock(void);
void fw_reset(void);
void fw_fault(void);
void fw_systick(void);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)

static volatile uint32_t systick_wraps;

__attribute__((section(".vectors"), used)) static const uintptr_t fw_vectors[16] = {
    (uintptr_t)&fw_stack_top, (uintptr_t)fw_reset, (uintptr_t)fw_fault, (uintptr_t)fw_fault,
    (uintptr_t)fw_fault, (uintptr_t)fw_fault, (uintptr_t)fw_fault, 0, 0, 0, 0,
    (uintptr_t)fw_fault, (uintptr_t)fw_fault, 0, (uintptr_t)fw_fault, (uintptr_t)fw_systick,
};

/* newlib's exit runs the fini arrays through these; nothing to do here */
void _init(void);
void _fini(void);
void _init(void)
{
}
void _fini(void)
{
}

void fw_fault(void)
{
    exit(3);
}

void fw_systick(void)
{
    systick_wraps = systick_wraps + 1u;
}

/* SysTick ticks (processor clock) since start-up, counting up. */
uint32_t fw_clock(void)
{
    uint32_t wraps, now;
    do {
        wraps = systick_wraps;
        now = SYST_CVR;
    } while (wraps != systick_wraps);
    return wraps * 0x1000000u + (0xFFFFFFu - now);
}

/* 2 * n + a few instructions: subs + bne per iteration */
static void __attribute__((noinline)) spin(uint32_t n)
{
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
}

void fw_reset(void)
{
#ifdef __ARM_FP
    CPACR |= 0xFu << 20; /* enable the FPU (CP10, CP11) before any float instruction */
    __asm__ volatile("dsb\n isb");
#endif
    memcpy(&fw_data_start, &fw_data_load, (size_t)((char *)&fw_data_end - (char *)&fw_data_start));
    memset(&fw_bss_start, 0, (size_t)((char *)&fw_bss_end - (char *)&fw_bss_start));
    initialise_monitor_handles();
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt on wrap, enable */
    spin(100u); /* let SysTick reload once before the first reading */
    const uint32_t n = 1000000u;
    const uint32_t t0 = fw_clock();
    spin(n);
    const uint32_t ticks = fw_clock() - t0;
    printf("calibration: %lu clock ticks for %lu instructions\n", (unsigned long)ticks, (unsigned long)(2u * n));
    exit(main());
}
