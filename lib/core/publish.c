/*
 * fwx - server publishing: the policy's publishing rules become the backend's listeners.
 *
 * On every policy or backend change the core compares the rules with what is listening and
 * changes only the difference, so a reload keeps the sessions of unchanged rules alive.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <stdlib.h>

static bool same_spec(const fwx_listen_spec *a, const fwx_listen_spec *b)
{
    return a->protocol == b->protocol && a->full_proxy == b->full_proxy &&
           fwx__sa_same_endpoint((const struct sockaddr *)&a->address, (const struct sockaddr *)&b->address) &&
           fwx__sa_same_endpoint((const struct sockaddr *)&a->server, (const struct sockaddr *)&b->server) &&
           fwx_guid_equal(&a->protocol_guid, &b->protocol_guid);
}

void fwx__publish_forget(fwx_firewall *fw)
{
    free(fw->published);
    fw->published = NULL;
    fw->n_published = 0;
}

fwx_result fwx__publish_sync(fwx_firewall *fw)
{
    const fwx_backend *b = fw->backend;
    size_t n = fw->policy ? fwx__policy_publish_count(fw->policy) : 0;
    if (b == NULL || b->listen == NULL || b->unlisten == NULL) {
        if (n > 0 && b != NULL)
            fwx__log(fw, FWX_LOG_WARN, "backend \"%s\" cannot listen: %zu publishing rules are not served", b->name, n);
        fwx__publish_forget(fw);
        return FWX_S_OK;
    }
    fwx_listen_spec *want = n ? calloc(n, sizeof *want) : NULL;
    bool *kept = fw->n_published ? calloc(fw->n_published, sizeof *kept) : NULL;
    if ((n && want == NULL) || (fw->n_published && kept == NULL)) {
        free(want);
        free(kept);
        return FWX_E_OUTOFMEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        const fwx__publish_rule *r = fwx__policy_publish_at(fw->policy, i);
        want[i].struct_size = sizeof want[i];
        want[i].protocol = r->protocol ? r->protocol->ip_protocol : FWX_PROTOCOL_TCP;
        want[i].address = r->listen;
        want[i].server = r->server;
        want[i].full_proxy = r->full_proxy;
        want[i].protocol_guid = r->protocol ? r->protocol->guid : FWX_GUID_NULL;
    }
    fwx_result first = FWX_S_OK;
    size_t m = 0;
    /* One entry per rule, then the listeners of removed rules that the backend failed to close. */
    fwx_listen_spec *now = n + fw->n_published ? calloc(n + fw->n_published, sizeof *now) : NULL;
    if (n + fw->n_published && now == NULL) {
        free(want);
        free(kept);
        return FWX_E_OUTOFMEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < fw->n_published && (kept[j] || !same_spec(&fw->published[j], &want[i])))
            j++;
        if (j < fw->n_published) { /* unchanged: keep listening, keep its sessions */
            kept[j] = true;
            now[m++] = fw->published[j];
            continue;
        }
        want[i].id = fwx__firewall_new_id(fw);
        now[m++] = want[i];
    }
    /* Close what went away before opening what is new: a rule may have moved to another server
       on the same address. */
    size_t n_stuck = 0;
    for (size_t j = 0; j < fw->n_published; j++) {
        if (kept[j])
            continue;
        fwx_result hr = b->unlisten(fw->backend_state, fw->published[j].id);
        if (FWX_FAILED(hr) && hr != FWX_E_NOT_FOUND) {
            /* Still listening: keep it, so that it counts as the gateway's own address, a rule
               that comes back reuses it, and the next change tries to close it again. */
            char a[FWX__SA_STRLEN];
            fwx__log(fw, FWX_LOG_WARN,
                     "backend \"%s\": closing the listener on %s (publishing %llu) failed: %s; retried at the "
                     "next policy change",
                     b->name, fwx__sa_fmt((const struct sockaddr *)&fw->published[j].address, a),
                     (unsigned long long)fw->published[j].id, fwx_strerror(hr));
            kept[j] = true;
            now[n + n_stuck++] = fw->published[j];
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        bool existed = false;
        for (size_t j = 0; j < fw->n_published && !existed; j++)
            existed = kept[j] && fw->published[j].id == now[i].id;
        char a[FWX__SA_STRLEN], s[FWX__SA_STRLEN];
        if (!existed) {
            fwx_result hr = b->listen(fw->backend_state, &now[i]);
            if (FWX_FAILED(hr)) {
                /* now[i] is rule i (one entry per rule, in order): name it where it is written. */
                const fwx__publish_rule *r = fwx__policy_publish_at(fw->policy, i);
                fwx__fail(fw, "%s:%d: publishing rule \"%s\" (%s -> %s): backend \"%s\" cannot serve it: %s",
                          fwx__policy_source(fw->policy), r ? r->line : 0, r && r->name ? r->name : "?",
                          fwx__sa_fmt((const struct sockaddr *)&now[i].address, a),
                          fwx__sa_fmt((const struct sockaddr *)&now[i].server, s), b->name, fwx_strerror(hr));
                if (first == FWX_S_OK)
                    first = hr;
                continue;
            }
            fwx__log(fw, FWX_LOG_INFO, "publishing %s -> %s%s", fwx__sa_fmt((const struct sockaddr *)&now[i].address, a),
                     fwx__sa_fmt((const struct sockaddr *)&now[i].server, s), now[i].full_proxy ? " (full proxy)" : "");
        }
        now[k++] = now[i];
    }
    for (size_t j = 0; j < n_stuck; j++)
        now[k++] = now[n + j];
    free(want);
    free(kept);
    free(fw->published);
    fw->published = now;
    fw->n_published = k;
    return first;
}
