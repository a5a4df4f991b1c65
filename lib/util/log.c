/*
 * fwx - log lines with fields: the core's and the plugins' lines, to the host's sink.
 * SPDX-License-Identifier: MIT
 */
#include "util/log.h"

#include <stdio.h>

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

bool fwx__log_enabled(const fwx_firewall *fw, fwx_log_level level)
{
    return fw == NULL || (unsigned)level <= (unsigned)fw->opts.log_level;
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

void fwx__log_emit(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const fwx_log_field *extra,
                   size_t n_extra, const char *line)
{
    if (!fwx__log_enabled(fw, level))
        return;
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
        const char *rule = about->rule ? about->rule : (c && c->rule[0] ? c->rule : NULL);
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

void fwx__logv(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, va_list ap)
{
    if (!fwx__log_enabled(fw, level))
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "fwx: ");
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    fwx__log_emit(fw, level, about, NULL, 0, line);
}

void fwx__log_at(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fwx__logv(fw, level, about, fmt, ap);
    va_end(ap);
}
