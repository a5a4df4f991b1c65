/*
 * fwx - listeners shared by the firewalls of one process (one per event loop).
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

#include <errno.h>
#include <linux/filter.h>
#include <sys/socket.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

/* The program runs with the packet's data at the transport payload; SKF_NET_OFF reaches the IP
   header. It returns an index into the group: the source address (IPv6: its four words folded),
   mixed (Knuth's multiplier, high bits) and taken modulo the group's size. An index past the
   group's current size (a listener still opening or already closed) makes the kernel fall
   back to its own hash, for that moment only. */
/* Attached after the bind: a socket with a program has a group of its own, and a bind into
   another socket's group would then be refused (EADDRINUSE). */
static int attach_by_source(int fd, uint32_t n)
{
#define NET(off) ((uint32_t)(SKF_NET_OFF + (off)))
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, NET(0)),            /* 0: version and IHL */
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),                /* 1 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 2),          /* 2: IPv4? */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NET(12)),           /* 3: its source */
        BPF_JUMP(BPF_JMP | BPF_JA, 11, 0, 0),                  /* 4: to the mix (16) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NET(8)),            /* 5: IPv6 source, word 0 */
        BPF_STMT(BPF_MISC | BPF_TAX, 0),                       /* 6 */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NET(12)),           /* 7: word 1 */
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),                /* 8 */
        BPF_STMT(BPF_MISC | BPF_TAX, 0),                       /* 9 */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NET(16)),           /* 10: word 2 */
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),                /* 11 */
        BPF_STMT(BPF_MISC | BPF_TAX, 0),                       /* 12 */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NET(20)),           /* 13: word 3 */
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),                /* 14 */
        BPF_STMT(BPF_JMP | BPF_JA, 0),                         /* 15 */
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 2654435761u),      /* 16: mix */
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),               /* 17 */
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n),                /* 18 */
        BPF_STMT(BPF_RET | BPF_A, 0),                          /* 19 */
    };
#undef NET
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) == 0 ? 0 : -errno;
}

int fwx__reuseport(int fd)
{
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0 ? 0 : -errno;
}

int fwx__reuseport_by_source(int fd, uint32_t n)
{
    return n > 1 ? attach_by_source(fd, n) : 0;
}
