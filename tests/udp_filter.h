/*
 * fwx tests - a UDP data filter written against the public headers only, shared by the suites
 * that carry UDP through data filters (check_proxy, netns/check_nft_udp): every datagram it
 * receives (with Recv(NULL), so in a buffer the core sized) goes on upper-cased to the other
 * side. It records the size of the buffers the core gave it and what it was told.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_TESTS_UDP_FILTER_H
#define FWX_TESTS_UDP_FILTER_H

#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>
#include <stdatomic.h>

typedef struct udf udf;
typedef struct udf_dir {
    IFWXIOCompletion iface;
    udf *f;
    int d; /* 0: reads the internal side, 1: the external */
} udf_dir;

struct udf {
    IFWXDataFilter iface;
    fwx_refcount refs;
    IFWXFirewall *fw; /* borrowed from the plugin's FilterInit, for CreateBuffer */
    IFWXSocket *s[2];
    udf_dir dirs[2];
    atomic_int setsockets, detached, datagrams, failures;
    atomic_uint buf_alloc; /* the allocated size of the last core buffer */
    atomic_uint max_len;   /* the largest datagram it received */
    int had_addr;          /* a Recv on a real socket reported the peer */
};

/* Readies f (refcount 1, no sockets, counters 0); the test sets f->fw before attaching it. */
void udf_init(udf *f);

#endif
