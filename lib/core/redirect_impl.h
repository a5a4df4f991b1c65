/*
 * fwx - redirect tracking: the record and handle layouts shared by redirect.c and wire.c.
 * Internal; not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_REDIRECT_IMPL_H
#define FWX_REDIRECT_IMPL_H

#include "core/internal.h"

/*
 * One hop. Hops are allocated one by one, not in an array, because a handle keeps a list of
 * the hops it pushed (to free their contexts when it is destroyed) and needs stable pointers.
 */
typedef struct fwx__hop {
    fwx_guid provider;
    fwx_redirect_handle *handle; /* NULL: read from the wire, or its handle was destroyed */
    fwx__list handle_node;       /* in handle->hops while handle != NULL */
    struct sockaddr_storage target;
    bool has_target;
    void *ctx;
    fwx_redirect_context_free_fn free_cb;
} fwx__hop;

struct fwx_redirect_handle {
    fwx_firewall *fw;
    fwx_guid provider;
    fwx__list hops; /* fwx__hop.handle_node */
    UT_hash_handle hh;
};

struct fwx_redirect_record {
    atomic_uint refs;
    struct sockaddr_storage orig_dst;
    bool has_orig_dst;
    uint32_t pid, uid; /* 0 / FWX_REDIRECT_UID_UNKNOWN when unknown */
    uint64_t cgroup_id;
    char *cgroup_path;
    size_t n_hops;
    fwx__hop *hops[FWX_REDIRECT_MAX_HOPS];
};

/* A record with the application fields set to "unknown" and no hop. */
fwx_redirect_record *fwx__redirect_record_alloc(void);
/* Appends a hop read from the wire (no handle, no context); the caller checked the count. */
bool fwx__redirect_record_add_foreign(fwx_redirect_record *rec, const fwx_guid *provider,
                                      const struct sockaddr_storage *target);

#endif /* FWX_REDIRECT_IMPL_H */
