/*
 * fwx - log lines with fields: the core's and the plugins' lines, to the host's sink.
 * SPDX-License-Identifier: MIT
 */
#include "core/log.h"

#include <stdio.h>
#include <time.h>

/* The core's fields and up to 32 of a plugin's: one array on the stack. */
#define MAX_FIELDS 48

const char *fwx_log_level_name(fwx_log_level level)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    return (unsigned)level < FWX__ARRAY_SIZE(names) ? names[level] : "info";
}

fwx_result fwx_firewall_set_log_sink(fwx_firewall *fw, fwx_log_sink_fn sink, void *arg)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    fw->log_sink = sink;
    fw->log_sink_arg = sink ? arg : NULL;
    return FWX_S_OK;
}

fwx_result fwx_firewall_set_log_level(fwx_firewall *fw, fwx_log_level level)
{
    if (fw == NULL)
        return FWX_E_POINTER;
    if ((unsigned)level > (unsigned)FWX_LOG_DEBUG)
        return FWX_E_INVALIDARG;
    /* Atomic: the watchdog's thread asks fwx__log_enabled while a plugin overruns. */
    __atomic_store_n(&fw->opts.log_level, level, __ATOMIC_RELAXED);
    return FWX_S_OK;
}

const char *fwx__event_name(uint32_t type, char buf[FWX__EVENT_NAME_LEN])
{
    switch (type) {
    case fwx_Connect_Tcp: return "Connect_Tcp";
    case fwx_Udp_Destination: return "Udp_Destination";
    case fwx_Bind_Tcp: return "Bind_Tcp";
    case fwx_Bind_Udp: return "Bind_Udp";
    case fwx_Listen: return "Listen";
    case fwx_AcceptedConnection: return "AcceptedConnection";
    case fwx_GetHostByName: return "GetHostByName";
    case fwx_GetHostByAddr: return "GetHostByAddr";
    case fwx_ConnectionTerminating: return "ConnectionTerminating";
    case fwx_EstablishedConnection: return "EstablishedConnection";
    case FWX__EVENT_DATA: return "data filter callback";
    default: snprintf(buf, FWX__EVENT_NAME_LEN, "event 0x%x", (unsigned)type); return buf;
    }
}

static bool has_key(const fwx_log_field *f, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return true;
    return false;
}

/* An address as the sinks see it: "ip:port", or the IP alone when the port is 0 (a session's
   client, known by its IP). */
static const char *addr_text(const struct sockaddr *sa, char buf[FWX__SA_STRLEN])
{
    return fwx__sa_port(sa) == 0 ? fwx__sa_fmt_ip(sa, buf) : fwx__sa_fmt(sa, buf);
}

static void emit(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const fwx_log_field *extra,
                 size_t n_extra, const char *line)
{
    if (fw == NULL || (fw->log_sink == NULL && fw->opts.log == NULL)) {
        fprintf(stderr, "%s\n", line);
        return;
    }
    if (fw->log_sink == NULL) {
        fw->opts.log(fw->opts.log_arg, level, line);
        return;
    }
    fwx_log_field f[MAX_FIELDS];
    char addr[MAX_FIELDS][FWX__SA_STRLEN];
    char ev[FWX__EVENT_NAME_LEN];
    size_t n = 0, na = 0; /* fields, address buffers used */
#define STR(k, v) f[n++] = (fwx_log_field){.key = (k), .type = FWX_LOG_STRING, .value = {.string = (v)}}
#define UINT(k, v) f[n++] = (fwx_log_field){.key = (k), .type = FWX_LOG_UINT, .value = {.u = (uint64_t)(v)}}
    if (about != NULL) {
        fwx__conn *c = about->conn;
        fwx__session *s = about->session ? about->session : (c ? c->session : NULL);
        if (about->plugin != NULL)
            STR("plugin", about->plugin->name);
        if (s != NULL) {
            UINT("session", s->id);
            STR("client", addr_text((const struct sockaddr *)&s->client, addr[na++]));
        }
        if (c != NULL) {
            UINT("connection", c->id);
            if (c->has_ext_peer)
                STR("peer", fwx__sa_fmt((const struct sockaddr *)&c->ext_peer, addr[na++]));
        }
        const char *rule = about->rule ? about->rule : (c && c->rule != NULL ? c->rule->text : NULL);
        if (rule != NULL)
            STR("rule", rule);
        if (about->event != 0)
            STR("event", fwx__event_name(about->event, ev));
        if (c != NULL && about->bytes) {
            UINT("bytes_in", c->bytes_in);
            UINT("bytes_out", c->bytes_out + c->bytes_sent); /* as the closed line counts them */
        }
    }
    size_t n_core = n;
    for (size_t i = 0; i < n_extra && n < MAX_FIELDS; i++) {
        if (has_key(f, n_core, extra[i].key))
            continue; /* the core's own field wins: it is what the sink filters on */
        f[n] = extra[i];
        if (extra[i].type == FWX_LOG_ADDRESS) {
            f[n].type = FWX_LOG_STRING;
            f[n].value.string = fwx__sa_fmt(extra[i].value.address, addr[na++]);
        } else if (extra[i].type == FWX_LOG_STRING && extra[i].value.string == NULL) {
            f[n].value.string = "";
        }
        n++;
    }
#undef STR
#undef UINT
    fwx_log_record rec = {
        .struct_size = sizeof rec, .level = level, .message = line, .fields = f, .n_fields = (uint32_t)n};
    fw->log_sink(fw->log_sink_arg, &rec);
}

/* ---- folding repeated lines ---------------------------------------------------------------- */

static uint64_t fold_key(const char *text, fwx_log_level level)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)level; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h != 0 ? h : 1;
}

static uint64_t fold_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a few ns: no system call */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fold_summary(fwx_firewall *fw, fwx__log_fold *f)
{
    if (f->folded != 0) {
        char line[256];
        snprintf(line, sizeof line, "fwx: ... repeated %u times (folded, more than %u a second): %s", f->folded,
                 fw->opts.log_repeat_limit ? fw->opts.log_repeat_limit : FWX__LOG_FOLD_BURST, f->sample);
        emit(fw, (fwx_log_level)f->level, NULL, NULL, 0, line);
    }
    f->folded = 0;
    f->count = 0;
}

/* True when the line goes out; false when it is folded. Also writes the summaries of keys
   whose second is over. A new key takes a free slot or the oldest one not folding. */
static bool fold_admit(fwx_firewall *fw, uint64_t key, fwx_log_level level, const char *line)
{
    uint64_t now = fold_now_ms();
    fwx__log_fold *mine = NULL, *oldest = NULL;
    for (size_t i = 0; i < FWX__LOG_FOLD_SLOTS; i++) {
        fwx__log_fold *f = &fw->log_fold[i];
        if (f->key != 0 && now - f->window_ms >= FWX__LOG_FOLD_WINDOW_MS) {
            fold_summary(fw, f);
            f->key = f->key == key ? key : 0;
            f->window_ms = now;
        }
        if (f->key == key)
            mine = f;
        else if (f->folded != 0)
            continue; /* folding now: kept, or a stream of distinct lines would undo it */
        else if (oldest == NULL || f->key == 0 || (oldest->key != 0 && f->window_ms < oldest->window_ms))
            oldest = f;
    }
    if (mine == NULL) {
        if (oldest == NULL)
            return true; /* every slot is folding something else: this one goes out as it is */
        mine = oldest;
        fold_summary(fw, mine);
        mine->key = key;
        mine->window_ms = now;
    }
    uint32_t limit = fw->opts.log_repeat_limit ? fw->opts.log_repeat_limit : FWX__LOG_FOLD_BURST;
    if (++mine->count <= limit)
        return true;
    if (mine->folded++ == 0) {
        mine->level = (int)level;
        snprintf(mine->sample, sizeof mine->sample, "%s", line);
    }
    return false;
}

void fwx__log_fold_flush(fwx_firewall *fw)
{
    for (size_t i = 0; fw != NULL && i < FWX__LOG_FOLD_SLOTS; i++) {
        fold_summary(fw, &fw->log_fold[i]);
        fw->log_fold[i].key = 0;
    }
}

static void emit_keyed(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about,
                       const fwx_log_field *extra, size_t n_extra, const char *line, const char *key)
{
    if (!fwx__log_enabled(fw, level))
        return;
    if (fw != NULL && fw->opts.log_repeat_limit != UINT32_MAX && (about == NULL || !about->no_fold) &&
        !fold_admit(fw, fold_key(key, level), level, line))
        return;
    emit(fw, level, about, extra, n_extra, line);
}

void fwx__log_emit(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const fwx_log_field *extra,
                   size_t n_extra, const char *line)
{
    emit_keyed(fw, level, about, extra, n_extra, line, line);
}

void fwx__logv(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, va_list ap)
{
    if (!fwx__log_enabled(fw, level))
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "fwx: ");
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    /* Warnings and errors are about conditions: a flood of one condition (a stray connection a
       second, each from another port) folds whatever its numbers. Info and debug lines are
       records (a connection opened, closed): only a line repeated word for word folds. */
    emit_keyed(fw, level, about, NULL, 0, line,
               level <= FWX_LOG_WARN || (about != NULL && about->fold_format) ? fmt : line);
}

void (fwx__log_at)(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fwx__logv(fw, level, about, fmt, ap);
    va_end(ap);
}
