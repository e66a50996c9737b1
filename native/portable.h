// Portable prebuilds (binding.gyp, portable=1; see native/portable.cc): included before every
// source file, it binds the pthread calls to their original symbol versions. glibc 2.34 moved
// libpthread into libc and gave these calls new versions; the originals are still there as
// compatibility symbols, and are what glibc 2.28 (the oldest the official Node binaries run on)
// provides.
#pragma once

#if defined(__x86_64__)
#define IPC_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define IPC_GLIBC_BASE "GLIBC_2.17"
#else
#error "portable prebuilds are made for x86_64 and aarch64"
#endif

#define IPC_OLD_SYMBOL(name) __asm__(".symver " #name "," #name "@" IPC_GLIBC_BASE)
IPC_OLD_SYMBOL(pthread_create);
IPC_OLD_SYMBOL(pthread_join);
IPC_OLD_SYMBOL(pthread_detach);
IPC_OLD_SYMBOL(pthread_kill);
IPC_OLD_SYMBOL(pthread_sigmask);
IPC_OLD_SYMBOL(pthread_once);
IPC_OLD_SYMBOL(pthread_attr_setstacksize);
IPC_OLD_SYMBOL(__pthread_key_create);
#undef IPC_OLD_SYMBOL
