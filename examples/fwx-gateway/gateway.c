/*
 * fwx-gateway: the example gateway built on libfwx: a proxy (the "proxy" backend, user mode) or
 * a transparent router (the "nft" backend: the kernel carries what no filter needs to see).
 *
 *   fwx-gateway --config FILE
 *   fwx-gateway --listen ADDR:PORT --upstream ADDR:PORT [--plugin NAME|PATH]...
 *
 * The configuration file is an fwx policy (doc/policy.md) plus a `gateway` group for this
 * program (README.md beside this file). A bad file is refused with file:line before any socket
 * is opened. SIGHUP reloads the policy without dropping live sessions; SIGINT and SIGTERM shut
 * down cleanly: every socket closed, every permission gone.
 *
 * Uses only the public headers.
 * SPDX-License-Identifier: MIT
 */
#include <fwx/fwx.h>

#include "ctl.h"
#include "json.h"
#include "service.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "limits.h"
#include "loops.h"
#include "metrics.h"
#include <sched.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifndef FWX_PLUGIN_DIR
#define FWX_PLUGIN_DIR "/usr/local/lib/fwx/plugins"
#endif

#define MAX_PLUGINS 32
#define MAX_LOCAL 16
#define MAX_LOCAL_REDIRECTS 16
enum { LOG_TEXT, LOG_JSON, LOG_JOURNAL };

/* One entry of gateway.local_redirect (the nft backend's local redirection). */
typedef struct local_redirect {
    unsigned port_min, port_max, slot;
    long long uid; /* -1: every user */
    char cgroup[256];
} local_redirect;

/* One more control socket (gateway.control_sockets), HAProxy's `stats socket` lines. */
#define MAX_EXTRA_CTL 4
typedef struct extra_ctl {
    char path[108];
    unsigned mode;
    long gid;
    char group[64];
    int level;
} extra_ctl;

typedef struct settings {
    char name[64];
    char control[256];
    char plugin_dir[256];
    char plugins[MAX_PLUGINS][256];
    int n_plugins;
    int json_logs;        /* LOG_TEXT, LOG_JSON or LOG_JOURNAL */
    int log_format_given; /* by the file: then JOURNAL_STREAM does not choose */
    fwx_log_level level;
    struct sockaddr_storage local[MAX_LOCAL];
    int n_local;
    unsigned timeout_s;
    unsigned port_min, port_max;
    int loopback_hosts;
    int kernel_end_on_close;
    int open_on_stop; /* gateway.on_stop = "open" (nft) */
    unsigned plugin_soft_ms, plugin_hard_ms; /* the plugin watchdog's limits, 0: off */
    char socks[128];
    char socks_users[512]; /* RFC 1929 credentials file, or "" */
    char backend[8]; /* "proxy", "nft" or "auto" */
    local_redirect redirects[MAX_LOCAL_REDIRECTS];
    int n_redirects;
    gw_limits limits; /* limits.c */
    unsigned control_mode; /* control_mode, 0600 by default */
    long control_gid;      /* control_group, -1: none */
    char control_group[64];
    int control_level;     /* CTL_LEVEL_* */
    char metrics_listen[128]; /* "" for none */
    extra_ctl extra[MAX_EXTRA_CTL];
    int n_extra;
    long long idle_s, handshake_s; /* gateway.idle_timeout, handshake_timeout; -1: the library's */
    unsigned threads; /* gateway.threads, --threads: event loops; 0: one per CPU this process may use */
} settings;

static struct {
    uv_loop_t *loop;
    fwx_firewall *fw;
    ctl_server *ctl;
    ctl_server *ctl_extra[MAX_EXTRA_CTL];
    uv_signal_t sighup, sigint, sigterm;
    settings cfg;
    const char *config_path; /* NULL in the quick form */
    fwx_plugin *plugins[MAX_PLUGINS]; /* as loaded, for the quick form's protocol binding */
    int n_plugins;
    char listen[128], upstream[128];
    int stopping;
    const char *backend; /* the one running */
    settings file_cfg; /* the file's gateway group as the running gateway read it (reload compares) */
    int cli_level;     /* --log-level given: the file's log_level does not apply */
    int check_only;    /* --check */
    unsigned n_loops;  /* event loops running (loops.h) */
    /* The policy file's text, read once for every loop (each firewall owns its own copy of the
       policy, made from this text). Written by loop 0 only while no other loop reads it. */
    char *policy_text;
    /* Events of loops 1..N-1 on their way to the control sockets (loop 0's thread). */
    uv_async_t ev_async;
    uv_mutex_t ev_lock;
    struct fwd_event *ev_head, *ev_tail;
    bool ev_open;
} g;

/* ---- logging ---------------------------------------------------------------------------- */

#define TS_LEN 48

static void timestamp(char ts[TS_LEN])
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, TS_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    size_t n = strlen(ts);
    snprintf(ts + n, TS_LEN - n, ".%03dZ", (int)((now.tv_nsec / 1000000) % 1000));
}

/* One JSON object a line: ts, level, msg, then the record's fields (fwx/log.h), so that a
   collector can filter on session, connection, client, peer, rule, plugin, bytes_in/out. */
static void json_record(void *arg, const fwx_log_record *r)
{
    (void)arg;
    char ts[TS_LEN];
    timestamp(ts);
    json_t *o = json_pack("{s:s, s:s, s:o}", "ts", ts, "level", fwx_log_level_name(r->level), "msg",
                          ex_json_text(r->message));
    for (uint32_t i = 0; o != NULL && i < r->n_fields; i++) {
        const fwx_log_field *f = &r->fields[i];
        json_t *v = f->type == FWX_LOG_INT    ? json_integer((json_int_t)f->value.i)
                    : f->type == FWX_LOG_UINT ? json_integer((json_int_t)f->value.u)
                                              : ex_json_text(f->type == FWX_LOG_STRING && f->value.string ? f->value.string : "");
        /* A key that is not UTF-8 is rewritten by the same rule as a value; a key already in
           the line (ts, level, msg, or a field given twice) keeps its first value. */
        json_t *k = ex_json_text(f->key ? f->key : "");
        if (k != NULL && json_object_get(o, json_string_value(k)) != NULL) {
            json_decref(v);
        } else if (k == NULL || json_object_set_new(o, json_string_value(k), v) != 0) {
            json_decref(o);
            o = NULL;
        }
        json_decref(k);
    }
    (void)ex_json_print(stdout, o);
}

/* A loop 1..N-1 setting up repeats what loop 0 has said (plugins loaded, the backend): not again. */
static bool quiet_now(void *arg, fwx_log_level level)
{
    const gw_loop *L = arg;
    return L != NULL && L->quiet && level >= FWX_LOG_INFO;
}

/* Several loops log at once: one record's several writes must not interleave with another's. */
static void json_record_locked(void *arg, const fwx_log_record *r)
{
    if (quiet_now(arg, r->level))
        return;
    flockfile(stdout);
    json_record(arg, r);
    funlockfile(stdout);
}

/* arg: the gw_loop whose firewall logs, or NULL (the gateway's own lines). */
static void log_line(void *arg, fwx_log_level level, const char *msg)
{
    if (quiet_now(arg, level))
        return;
    if (g.cfg.json_logs == LOG_JOURNAL) {
        svc_journal_line(stdout, level, msg);
        return;
    }
    if (g.cfg.json_logs) {
        fwx_log_record r = {.struct_size = sizeof r, .level = level, .message = msg};
        json_record_locked(NULL, &r);
        return;
    }
    char ts[TS_LEN];
    timestamp(ts);
    fprintf(stdout, "%s %-5s %s\n", ts, fwx_log_level_name(level), msg);
    fflush(stdout);
}

static void say(fwx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(fwx_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "fwx-gateway: ");
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (level <= g.cfg.level)
        log_line(NULL, level, msg);
}

/* ---- configuration ------------------------------------------------------------------------- */

static int parse_addr(const char *text, struct sockaddr_storage *out, int need_port)
{
    char host[INET6_ADDRSTRLEN + 8];
    const char *port = NULL;
    memset(out, 0, sizeof *out);
    if (strlen(text) >= sizeof host)
        return -1;
    strcpy(host, text);
    char *h = host;
    if (h[0] == '[') {
        char *close = strchr(h, ']');
        if (close == NULL)
            return -1;
        *close = '\0';
        h++;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return -1;
    } else {
        char *colon = strrchr(h, ':');
        if (colon != NULL && strchr(h, ':') == colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (need_port && port == NULL)
        return -1;
    unsigned long p = 0;
    if (port != NULL) {
        char *end;
        errno = 0;
        p = strtoul(port, &end, 10);
        if (*port == '\0' || *end != '\0' || errno != 0 || p > 65535 || (port[0] == '0' && port[1] != '\0'))
            return -1;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        return 0;
    }
    return -1;
}

/* "PORT" or "LOW-HIGH" within 1-65535. */
static bool parse_ports(const char *text, unsigned *lo, unsigned *hi)
{
    char tail;
    if (sscanf(text, "%u-%u%c", lo, hi, &tail) != 2) {
        if (sscanf(text, "%u%c", lo, &tail) != 1)
            return false;
        *hi = *lo;
    }
    return *lo >= 1 && *hi <= 65535 && *lo <= *hi;
}

static void settings_defaults(settings *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "fwx-gateway");
    snprintf(s->plugin_dir, sizeof s->plugin_dir, "%s", FWX_PLUGIN_DIR);
    snprintf(s->control, sizeof s->control, "%s", CTL_DEFAULT_SOCKET); /* where fwxctl looks */
    s->level = FWX_LOG_INFO;
    s->timeout_s = 60;
    s->idle_s = s->handshake_s = -1;
    snprintf(s->backend, sizeof s->backend, "proxy");
    s->control_mode = 0600;
    s->control_gid = -1;
    s->control_level = CTL_LEVEL_ADMIN;
}

static bool backend_known(const char *b)
{
    return b != NULL && (strcmp(b, "proxy") == 0 || strcmp(b, "nft") == 0 || strcmp(b, "auto") == 0);
}

/* "text", "json", "journal" or its synonym "syslog" (the same `<N>` lines); -1 otherwise. */
static int log_format_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "text") == 0)
        return LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return LOG_JSON;
    if (strcmp(s, "journal") == 0 || strcmp(s, "syslog") == 0)
        return LOG_JOURNAL;
    return -1;
}

/* Reads the `gateway` group of the file. Errors name file:line and the key. */
static int settings_load(const char *path, settings *s, char *err, size_t errlen)
{
    config_t cfg;
    int ok = 0;
    char *text = NULL;
    fwx_config_error ce;
    /* Read it as the policy loader does, so both accept the same files (trailing commas). */
    if (fwx_config_read_file(path, &text, &ce) != FWX_S_OK) {
        snprintf(err, errlen, "%s:%d: %s", ce.file, ce.line, ce.message);
        return -1;
    }
    config_init(&cfg);
    int rc = config_read_string(&cfg, text);
    free(text);
    if (rc != CONFIG_TRUE) {
        /* The policy loader reports syntax errors in more detail; this is a fallback. */
        snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cfg), config_error_text(&cfg));
        config_destroy(&cfg);
        return -1;
    }
    config_setting_t *gw = config_lookup(&cfg, "gateway");
    if (gw == NULL) {
        config_destroy(&cfg);
        return 0;
    }
    static const char *known[] = {"name",        "control_socket", "plugin_dir", "plugins", "log_format",
                                  "log_level",   "local_addresses", "timeout",   "port_range", "loopback_hosts", "socks",
                                  "backend", "local_redirect", "kernel_end_on_close", "on_stop", "socks_users",
                                  "plugin_soft_limit_ms", "plugin_hard_limit_ms", "control_mode", "control_group",
                                  "control_level", "metrics_listen", "control_sockets", "idle_timeout", "handshake_timeout",
                                  "threads", GW_LIMITS_KEYS};
    for (int i = 0; i < config_setting_length(gw); i++) {
        config_setting_t *e = config_setting_get_elem(gw, (unsigned)i);
        const char *k = config_setting_name(e);
        size_t j = 0;
        while (j < sizeof known / sizeof known[0] && strcmp(known[j], k) != 0)
            j++;
        int line = config_setting_source_line(e);
        const char *str = config_setting_get_string(e);
#define BAD(...)                                                                                  \
    do {                                                                                          \
        char m_[256];                                                                             \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                     \
        snprintf(err, errlen, "%s:%d: gateway.%s: %s", path, line, k, m_);                        \
        goto out;                                                                                 \
    } while (0)
        if (j == sizeof known / sizeof known[0])
            BAD("unknown key");
        char lm[256];
        int lim = gw_limits_parse(k, e, &s->limits, lm, sizeof lm);
        if (lim < 0)
            BAD("%s", lm);
        if (lim > 0) {
        } else if (strcmp(k, "name") == 0) {
            if (str == NULL || !*str || strlen(str) >= sizeof s->name)
                BAD("must be a non-empty string of at most %zu characters", sizeof s->name - 1);
            snprintf(s->name, sizeof s->name, "%s", str);
        } else if (strcmp(k, "control_socket") == 0) {
            if (str == NULL || strlen(str) >= sizeof s->control)
                BAD("must be a socket path");
            snprintf(s->control, sizeof s->control, "%s", str);
        } else if (strcmp(k, "control_mode") == 0) {
            /* A string, so that the octal reads as it does for chmod: "0660". */
            char *end = NULL;
            unsigned long v = str != NULL && str[0] == '0' ? strtoul(str, &end, 8) : 0;
            if (end == NULL || *end != '\0' || v == 0 || (v & ~0770UL) != 0 || !(v & 0600))
                BAD("must be an octal mode string such as \"0660\": read and write for the owner, maybe the "
                    "group, never others");
            s->control_mode = (unsigned)v;
        } else if (strcmp(k, "control_group") == 0) {
            struct group *gr = str != NULL && *str && strlen(str) < sizeof s->control_group ? getgrnam(str) : NULL;
            if (gr == NULL)
                BAD("must name a group of this system (getent group %s)", str ? str : "NAME");
            snprintf(s->control_group, sizeof s->control_group, "%s", str);
            s->control_gid = (long)gr->gr_gid;
        } else if (strcmp(k, "control_level") == 0) {
            if (str == NULL || (strcmp(str, "admin") != 0 && strcmp(str, "operator") != 0))
                BAD("must be \"admin\" (look and act) or \"operator\" (look only)");
            s->control_level = strcmp(str, "admin") == 0 ? CTL_LEVEL_ADMIN : CTL_LEVEL_OPERATOR;
        } else if (strcmp(k, "control_sockets") == 0) {
            if (!config_setting_is_list(e) || config_setting_length(e) > MAX_EXTRA_CTL)
                BAD("must be a list of at most %d groups ( { path = \"/run/fwx/ro.sock\"; mode = \"0660\"; "
                    "group = \"fwx\"; level = \"operator\"; }, ... )", MAX_EXTRA_CTL);
            for (int p = 0; p < config_setting_length(e); p++) {
                config_setting_t *r = config_setting_get_elem(e, (unsigned)p);
                extra_ctl *x = &s->extra[s->n_extra];
                memset(x, 0, sizeof *x);
                x->mode = 0600;
                x->gid = -1;
                x->level = CTL_LEVEL_OPERATOR; /* an extra socket is read-only unless it says so */
                line = config_setting_source_line(r);
                const char *v = NULL;
                if (!config_setting_is_group(r))
                    BAD("entry %d must be a group", p);
                if (config_setting_lookup_string(r, "path", &v) != CONFIG_TRUE || v[0] == '\0' ||
                    strlen(v) >= sizeof x->path)
                    BAD("entry %d: path must be a socket path of at most %zu bytes", p, sizeof x->path - 1);
                snprintf(x->path, sizeof x->path, "%s", v);
                if (config_setting_lookup_string(r, "mode", &v) == CONFIG_TRUE) {
                    char *end = NULL;
                    unsigned long m = v[0] == '0' ? strtoul(v, &end, 8) : 0;
                    if (end == NULL || *end != '\0' || m == 0 || (m & ~0770UL) != 0 || !(m & 0600))
                        BAD("entry %d: mode must be an octal string such as \"0660\", never open to others", p);
                    x->mode = (unsigned)m;
                }
                if (config_setting_lookup_string(r, "group", &v) == CONFIG_TRUE) {
                    struct group *gr = v[0] && strlen(v) < sizeof x->group ? getgrnam(v) : NULL;
                    if (gr == NULL)
                        BAD("entry %d: group must name a group of this system", p);
                    snprintf(x->group, sizeof x->group, "%s", v);
                    x->gid = (long)gr->gr_gid;
                }
                if (config_setting_lookup_string(r, "level", &v) == CONFIG_TRUE) {
                    if (strcmp(v, "admin") != 0 && strcmp(v, "operator") != 0)
                        BAD("entry %d: level must be \"admin\" or \"operator\"", p);
                    x->level = strcmp(v, "admin") == 0 ? CTL_LEVEL_ADMIN : CTL_LEVEL_OPERATOR;
                }
                for (int i = 0; i < config_setting_length(r); i++) {
                    const char *rk = config_setting_name(config_setting_get_elem(r, (unsigned)i));
                    if (strcmp(rk, "path") != 0 && strcmp(rk, "mode") != 0 && strcmp(rk, "group") != 0 &&
                        strcmp(rk, "level") != 0)
                        BAD("entry %d: unknown key \"%s\" (path, mode, group, level)", p, rk);
                }
                s->n_extra++;
            }
        } else if (strcmp(k, "metrics_listen") == 0) {
            struct sockaddr_storage tmp;
            if (str == NULL || (*str && (strlen(str) >= sizeof s->metrics_listen || parse_addr(str, &tmp, 1) != 0)))
                BAD("must be ADDR:PORT, such as \"127.0.0.1:9464\", or \"\" for none");
            snprintf(s->metrics_listen, sizeof s->metrics_listen, "%s", str);
        } else if (strcmp(k, "plugin_dir") == 0) {
            if (str == NULL || strlen(str) >= sizeof s->plugin_dir)
                BAD("must be a directory path");
            snprintf(s->plugin_dir, sizeof s->plugin_dir, "%s", str);
        } else if (strcmp(k, "plugins") == 0) {
            int n = config_setting_length(e);
            if (!config_setting_is_array(e) && !config_setting_is_list(e))
                BAD("must be a list of plugin names or paths");
            for (int p = 0; p < n; p++) {
                const char *v = config_setting_get_string_elem(e, (unsigned)p);
                if (v == NULL || !*v || strlen(v) >= sizeof s->plugins[0] || s->n_plugins >= MAX_PLUGINS)
                    BAD("entry %d must be a plugin name or path (at most %d plugins)", p, MAX_PLUGINS);
                snprintf(s->plugins[s->n_plugins++], sizeof s->plugins[0], "%s", v);
            }
        } else if (strcmp(k, "log_format") == 0) {
            s->json_logs = log_format_parse(str);
            if (s->json_logs < 0)
                BAD("must be \"text\", \"json\" or \"journal\" (\"syslog\")");
            s->log_format_given = 1;
        } else if (strcmp(k, "log_level") == 0) {
            static const char *lv[] = {"error", "warn", "info", "debug"};
            int l = 0;
            while (l < 4 && (str == NULL || strcmp(lv[l], str) != 0))
                l++;
            if (l == 4)
                BAD("must be one of error, warn, info, debug");
            s->level = (fwx_log_level)l;
        } else if (strcmp(k, "local_addresses") == 0) {
            /* A lone string would otherwise read as an empty list: silently no addresses. */
            if (!config_setting_is_array(e) && !config_setting_is_list(e))
                BAD("must be a list of IP addresses, such as [ \"%s\" ]", str != NULL ? str : "203.0.113.1");
            int n = config_setting_length(e);
            for (int p = 0; p < n; p++) {
                const char *v = config_setting_get_string_elem(e, (unsigned)p);
                if (v == NULL || s->n_local >= MAX_LOCAL || parse_addr(v, &s->local[s->n_local], 0) != 0)
                    BAD("entry %d must be an IP address (at most %d)", p, MAX_LOCAL);
                s->n_local++;
            }
        } else if (strcmp(k, "plugin_soft_limit_ms") == 0 || strcmp(k, "plugin_hard_limit_ms") == 0) {
            int v = 0;
            if (config_setting_type(e) != CONFIG_TYPE_INT || (v = config_setting_get_int(e)) < 0 || v > 3600000)
                BAD("must be a whole number of milliseconds from 0 (off) to 3600000");
            *(k[7] == 's' ? &s->plugin_soft_ms : &s->plugin_hard_ms) = (unsigned)v;
            if (s->plugin_soft_ms && s->plugin_hard_ms && s->plugin_hard_ms < s->plugin_soft_ms)
                BAD("plugin_hard_limit_ms must not be below plugin_soft_limit_ms");
        } else if (strcmp(k, "idle_timeout") == 0 || strcmp(k, "handshake_timeout") == 0) {
            /* The defaults of protocols that set none (fwx_firewall_set_timeouts). */
            int t = config_setting_type(e);
            long long v = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 ? config_setting_get_int64(e) : -1;
            if (v < 0 || v > (long long)FWX_TIMEOUTS_MAX)
                BAD("must be a whole number of seconds from 0 (none) to %u", FWX_TIMEOUTS_MAX);
            *(k[0] == 'i' ? &s->idle_s : &s->handshake_s) = v;
        } else if (strcmp(k, "timeout") == 0) {
            int v = 0;
            if (config_setting_type(e) != CONFIG_TYPE_INT || (v = config_setting_get_int(e)) < 1 || v > 3600)
                BAD("must be a whole number of seconds from 1 to 3600");
            s->timeout_s = (unsigned)v;
        } else if (strcmp(k, "socks") == 0) {
            struct sockaddr_storage tmp;
            if (str == NULL || strlen(str) >= sizeof s->socks || parse_addr(str, &tmp, 1) != 0)
                BAD("must be ADDR:PORT, such as \"127.0.0.1:1080\"");
            snprintf(s->socks, sizeof s->socks, "%s", str);
        } else if (strcmp(k, "socks_users") == 0) {
            if (str == NULL || !*str || strlen(str) >= sizeof s->socks_users)
                BAD("must be the path of a credentials file (user:hash lines)");
            snprintf(s->socks_users, sizeof s->socks_users, "%s", str);
        } else if (strcmp(k, "local_redirect") == 0) {
            if (!config_setting_is_list(e) || config_setting_length(e) > MAX_LOCAL_REDIRECTS)
                BAD("must be a list of at most %d groups ( { ports = \"80\"; slot = 0; }, ... )", MAX_LOCAL_REDIRECTS);
            for (int p = 0; p < config_setting_length(e); p++) {
                config_setting_t *r = config_setting_get_elem(e, (unsigned)p);
                local_redirect *lr = &s->redirects[s->n_redirects];
                memset(lr, 0, sizeof *lr);
                lr->uid = -1;
                line = config_setting_source_line(r);
                if (!config_setting_is_group(r))
                    BAD("entry %d must be a group", p);
                const char *ports = NULL, *cg = NULL;
                int slot = -1, uid = -1;
                if (config_setting_lookup_string(r, "ports", &ports) != CONFIG_TRUE ||
                    !parse_ports(ports, &lr->port_min, &lr->port_max))
                    BAD("entry %d: ports must be \"PORT\" or \"LOW-HIGH\" within 1-65535", p);
                if (config_setting_lookup_int(r, "slot", &slot) != CONFIG_TRUE || slot < 0 || slot > 7 ||
                    (s->n_redirects > 0 && (unsigned)slot != s->redirects[0].slot))
                    BAD("entry %d: slot must be 0-7, the same in every entry (this gateway's slot among the host's "
                        "cooperating proxies)", p);
                lr->slot = (unsigned)slot;
                if (config_setting_lookup_int(r, "user", &uid) == CONFIG_TRUE) {
                    if (uid < 0)
                        BAD("entry %d: user must be a numeric user id", p);
                    lr->uid = uid;
                }
                if (config_setting_lookup_string(r, "cgroup", &cg) == CONFIG_TRUE) {
                    if (cg[0] != '/' || strlen(cg) >= sizeof lr->cgroup)
                        BAD("entry %d: cgroup must be a cgroup v2 path such as \"/system.slice/app.service\"", p);
                    snprintf(lr->cgroup, sizeof lr->cgroup, "%s", cg);
                }
                for (int i = 0; i < config_setting_length(r); i++) {
                    const char *rk = config_setting_name(config_setting_get_elem(r, (unsigned)i));
                    if (strcmp(rk, "ports") != 0 && strcmp(rk, "slot") != 0 && strcmp(rk, "user") != 0 &&
                        strcmp(rk, "cgroup") != 0)
                        BAD("entry %d: unknown key \"%s\" (ports, slot, user, cgroup)", p, rk);
                }
                s->n_redirects++;
            }
        } else if (strcmp(k, "backend") == 0) {
            if (!backend_known(str))
                BAD("must be \"proxy\", \"nft\" or \"auto\"");
            snprintf(s->backend, sizeof s->backend, "%s", str);
        } else if (strcmp(k, "kernel_end_on_close") == 0) {
            if (config_setting_type(e) != CONFIG_TYPE_BOOL)
                BAD("must be true or false");
            s->kernel_end_on_close = config_setting_get_bool(e);
        } else if (strcmp(k, "on_stop") == 0) {
            if (str == NULL || (strcmp(str, "closed") != 0 && strcmp(str, "open") != 0))
                BAD("must be \"closed\" (forwarding dropped while fwx is stopped) or \"open\"");
            s->open_on_stop = strcmp(str, "open") == 0;
        } else if (strcmp(k, "loopback_hosts") == 0) {
            if (config_setting_type(e) != CONFIG_TYPE_BOOL)
                BAD("must be true or false");
            s->loopback_hosts = config_setting_get_bool(e);
        } else if (strcmp(k, "threads") == 0) {
            long long v = 0;
            if (config_setting_type(e) == CONFIG_TYPE_INT)
                v = config_setting_get_int(e);
            else if (config_setting_type(e) == CONFIG_TYPE_INT64)
                v = config_setting_get_int64(e);
            else
                v = -1;
            if (v < 0 || v > GW_MAX_LOOPS)
                BAD("must be a whole number of event loops from 1 to %d, or 0 for one per CPU", GW_MAX_LOOPS);
            s->threads = (unsigned)v;
        } else if (strcmp(k, "port_range") == 0) {
            unsigned lo, hi;
            char tail;
            if (str == NULL || sscanf(str, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1024 || hi > 65535 || lo > hi)
                BAD("must be \"LOW-HIGH\" with 1024 <= LOW <= HIGH <= 65535");
            s->port_min = lo;
            s->port_max = hi;
        }
#undef BAD
    }
    ok = 1;
out:
    config_destroy(&cfg);
    return ok ? 0 : -1;
}

/* The quick form's policy: publish LISTEN -> UPSTREAM, allow it, bind the plugins to it. */
static fwx_policy *quick_policy(const char *listen, const char *upstream, char *err, size_t errlen)
{
    struct sockaddr_storage l;
    char text[8192], filters[4096] = "";
    parse_addr(listen, &l, 1);
    unsigned port = ntohs(l.ss_family == AF_INET ? ((struct sockaddr_in *)&l)->sin_port
                                                  : ((struct sockaddr_in6 *)&l)->sin6_port);
    size_t off = 0;
    for (int i = 0; i < g.n_plugins; i++) {
        char guid[FWX_GUID_STRLEN];
        fwx_guid_format(&fwx_plugin_info(g.plugins[i])->filter_guid, guid);
        off += (size_t)snprintf(filters + off, sizeof filters - off, "%s\"%s\"", off ? ", " : "", guid);
    }
    snprintf(text, sizeof text,
             "protocols = ( { name = \"published\"; guid = \"{6f0e5c2a-9b1d-4e7a-8c3f-00000000%04x}\";"
             " protocol = \"tcp\"; port = %u; direction = \"inbound\"; %s%s%s } );\n"
             "rules = ( { name = \"publish %s\"; action = \"allow\"; from = [ \"localhost\", \"external\" ];"
             " to = [ \"localhost\", \"external\" ]; protocols = [ \"published\" ]; } );\n"
             "publishing = ( { name = \"quick\"; listen = \"%s\"; server = \"%s\"; protocol = \"published\";"
             " full_proxy = true; } );\n",
             port & 0xFFFF, port, off ? "filters = [ " : "", filters, off ? " ];" : "", listen, listen, upstream);
    fwx_policy *pol = NULL;
    fwx_config_error e;
    if (fwx_policy_load_string(text, "command line", &pol, &e) != FWX_S_OK) {
        snprintf(err, errlen, "%s: %s: %s", e.file, e.key, e.message);
        return NULL;
    }
    return pol;
}

/* Reads the policy file's text for every loop (g.policy_text); 0, or -1 with err. [loop 0] */
static int read_policy_text(char *err, size_t errlen)
{
    if (g.config_path == NULL)
        return 0;
    char *text = NULL;
    fwx_config_error e;
    if (fwx_config_read_file(g.config_path, &text, &e) != FWX_S_OK) {
        snprintf(err, errlen, "%s:%d: %s%s%s", e.file, e.line, e.key, e.key[0] ? ": " : "", e.message);
        return -1;
    }
    free(g.policy_text);
    g.policy_text = text;
    return 0;
}

/* A policy of the loop's own from @p text (the file's, or NULL in the quick form). */
static fwx_policy *policy_from_text(const char *text, char *err, size_t errlen)
{
    if (g.config_path == NULL)
        return quick_policy(g.listen, g.upstream, err, errlen);
    fwx_policy *p = NULL;
    fwx_config_error e;
    if (fwx_policy_load_string(text, g.config_path, &p, &e) != FWX_S_OK) {
        snprintf(err, errlen, "%s:%d: %s%s%s", e.file, e.line, e.key, e.key[0] ? ": " : "", e.message);
        return NULL;
    }
    return p;
}

/* A policy of the loop's own, from the text read last (read_policy_text). */
static fwx_policy *load_policy(char *err, size_t errlen)
{
    if (g.config_path != NULL && g.policy_text == NULL && read_policy_text(err, errlen) != 0)
        return NULL;
    return policy_from_text(g.policy_text, err, errlen);
}

/* Loads the configured plugins into fw; 0, or 1 after saying which failed and why. Loop 0's
   are kept (the quick form's policy names their filters; every loop loads the same). */
static int load_plugins(fwx_firewall *fw)
{
    int status = 0;
    for (int i = 0; i < g.cfg.n_plugins; i++) {
        char path[600];
        if (strchr(g.cfg.plugins[i], '/') != NULL)
            snprintf(path, sizeof path, "%s", g.cfg.plugins[i]);
        else
            snprintf(path, sizeof path, "%s/%s.so", g.cfg.plugin_dir, g.cfg.plugins[i]);
        fwx_plugin *pl = NULL;
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "fwx-gateway: plugin \"%s\": no file %s (%s); set gateway.plugin_dir (or --plugin-dir) "
                            "to the directory holding %s.so, or give the plugin's path\n",
                    g.cfg.plugins[i], path, strerror(errno), g.cfg.plugins[i]);
            status = 1;
        } else if (FWX_FAILED(fwx_firewall_load_plugin(fw, path, &pl))) {
            fprintf(stderr, "fwx-gateway: %s\n", fwx_firewall_last_error(fw));
            status = 1;
        } else if (fw == g.fw && g.n_plugins < MAX_PLUGINS) {
            g.plugins[g.n_plugins++] = pl; /* loading the same file twice gives the same plugin */
        }
    }
    return status;
}

/* What --check, the start and every reload ask of a policy beyond its syntax: its filters are
   loaded and its listen addresses are this host's. 0, or -1 with err filled. */
static int check_policy(fwx_firewall *fw, const fwx_policy *p, char *err, size_t errlen)
{
    fwx_config_error e;
    if (fwx_firewall_check_policy(fw, p, &e) == FWX_S_OK)
        return 0;
    snprintf(err, errlen, "%s:%d: %s%s%s", e.file, e.line, e.key, e.key[0] ? ": " : "", e.message);
    return -1;
}

/* ---- signals ------------------------------------------------------------------------------- */

/* The service manager's view (Type=notify): a failure to tell it is logged, never fatal. */
static void notify(const char *state)
{
    if (svc_notify(state) != 0)
        say(FWX_LOG_WARN, "cannot notify the service manager (%s): %s", state, strerror(errno));
}

static void notify_reloading(void)
{
    if (svc_notify_reloading() != 0)
        say(FWX_LOG_WARN, "cannot notify the service manager (RELOADING=1): %s", strerror(errno));
}

static void on_closed_all(fwx_firewall *fw, void *arg)
{
    (void)fw, (void)arg;
    g.fw = NULL;
}

static void events_close(void);

static void shutdown_gateway(int signum)
{
    if (g.stopping++)
        return;
    notify("STOPPING=1");
    say(FWX_LOG_INFO, "signal %d: shutting down", signum);
    events_close(); /* before the control servers go: other loops stop forwarding to them */
    for (unsigned i = 1; i < g.n_loops; i++)
        gw_loop_stop(gw_loop_at(i));
    if (g.ctl != NULL)
        ctl_server_close(g.ctl);
    g.ctl = NULL;
    for (int i = 0; i < MAX_EXTRA_CTL; i++) {
        ctl_server_close(g.ctl_extra[i]);
        g.ctl_extra[i] = NULL;
    }
    gw_metrics_stop();
    uv_close((uv_handle_t *)&g.sighup, NULL);
    uv_close((uv_handle_t *)&g.sigint, NULL);
    uv_close((uv_handle_t *)&g.sigterm, NULL);
    fwx_firewall_close(g.fw, on_closed_all, NULL);
}

/* What a reload does with the `gateway` group: the settings that can change under a running
   gateway change, the others are named at warn (they take effect at the next start). */
static void apply_gateway_settings(const settings *n)
{
    settings *o = &g.cfg, *f = &g.file_cfg;
    if (strcmp(n->metrics_listen, o->metrics_listen) != 0) {
        char err[300];
        gw_metrics_stop_http();
        if (n->metrics_listen[0] != '\0' && gw_metrics_listen(n->metrics_listen, err, sizeof err) != 0)
            say(FWX_LOG_ERROR, "reload: %s (no metrics listener until it is fixed)", err);
        else
            say(FWX_LOG_INFO, "reload: metrics_listen is now %s", n->metrics_listen[0] ? n->metrics_listen : "off");
        snprintf(o->metrics_listen, sizeof o->metrics_listen, "%s", n->metrics_listen);
    }
    if (n->control_level != o->control_level) {
        ctl_server_set_level(g.ctl, (ctl_level)n->control_level);
        o->control_level = n->control_level;
        say(FWX_LOG_INFO, "reload: the control socket's level is now %s",
            n->control_level == CTL_LEVEL_ADMIN ? "admin" : "operator");
    }
    if ((n->control_mode != f->control_mode || n->control_gid != f->control_gid) && g.ctl != NULL) {
        /* The socket stays; who may connect to it changes with its mode and group. */
        if ((n->control_gid != f->control_gid &&
             chown(g.cfg.control, (uid_t)-1, n->control_gid >= 0 ? (gid_t)n->control_gid : getegid()) != 0) ||
            chmod(g.cfg.control, n->control_mode) != 0)
            say(FWX_LOG_ERROR, "reload: control socket %s: cannot change its mode or group: %s", g.cfg.control,
                strerror(errno));
        else
            say(FWX_LOG_INFO, "reload: control socket %s is now mode %04o, group %s", g.cfg.control,
                n->control_mode, n->control_group[0] ? n->control_group : "(the gateway's)");
        f->control_mode = o->control_mode = n->control_mode;
        f->control_gid = o->control_gid = n->control_gid;
        snprintf(o->control_group, sizeof o->control_group, "%s", n->control_group);
    }
    if (n->level != f->level && !g.cli_level) {
        /* The gateway's lines, the library's and the plugins' all follow at once. */
        fwx_result hr = fwx_firewall_set_log_level(g.fw, n->level);
        if (FWX_FAILED(hr))
            say(FWX_LOG_ERROR, "reload: gateway.log_level: the library refused %s: %s", fwx_log_level_name(n->level),
                fwx_strerror(hr));
        o->level = n->level;
        say(FWX_LOG_INFO, "reload: log level is now %s", fwx_log_level_name(n->level));
    }
    f->control_level = n->control_level;
    f->level = n->level;
    /* Everything else is fixed at start: sockets are open, plugins loaded, the firewall made. */
    static const struct {
        const char *key;
        size_t off, len;
    } fixed[] = {
#define F(k, m) {k, offsetof(settings, m), sizeof(((settings *)0)->m)}
        F("name", name), F("control_socket", control), F("plugin_dir", plugin_dir), F("plugins", plugins),
        F("plugins", n_plugins), F("log_format", json_logs), F("local_addresses", local),
        F("local_addresses", n_local), F("timeout", timeout_s), F("port_range", port_min), F("port_range", port_max),
        F("loopback_hosts", loopback_hosts), F("kernel_end_on_close", kernel_end_on_close), F("on_stop", open_on_stop),
        F("plugin_soft_limit_ms", plugin_soft_ms), F("plugin_hard_limit_ms", plugin_hard_ms), F("socks", socks),
        F("socks_users", socks_users), F("backend", backend), F("local_redirect", redirects),
        F("local_redirect", n_redirects), F("socks_limits", limits),
        F("control_sockets", extra), F("control_sockets", n_extra), F("threads", threads),
#undef F
    };
    const char *said = "";
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (memcmp((const char *)n + fixed[i].off, (const char *)f + fixed[i].off, fixed[i].len) != 0 &&
            strcmp(said, fixed[i].key) != 0) {
            say(FWX_LOG_WARN, "reload: gateway.%s changed: it takes effect at the next start (restart the gateway)",
                fixed[i].key);
            said = fixed[i].key;
        }
    }
}

/* The gateway group's idle_timeout and handshake_timeout, over the library's defaults. */
static void apply_timeouts(fwx_firewall *fw, const settings *s)
{
    fwx_timeouts t;
    fwx_timeouts_init(&t);
    if (s->idle_s >= 0)
        t.idle_s = (uint32_t)s->idle_s;
    if (s->handshake_s >= 0)
        t.handshake_s = (uint32_t)s->handshake_s;
    (void)fwx_firewall_set_timeouts(fw, &t); /* the values were checked when read */
}

/*
 * A reload is all or nothing across the loops: every loop first makes and checks a policy of
 * its own from the new text (nothing changes yet), then each puts it in force; if one cannot
 * (a listener it cannot open), the loops that already took it, and that one, go back to the
 * running text. So no two loops ever decide by different policies after a reload, and the
 * answer and the log name the loop that refused and why.
 */
typedef struct reload_job {
    const char *text;                 /* the text to make the policy from (NULL: the quick form) */
    fwx_policy *prepared[GW_MAX_LOOPS]; /* per loop, made and checked; owned until committed */
    int rc;
    char err[900];
} reload_job;

/* On each loop, nothing changed yet: its own policy from the new text, checked against its own
   firewall (its plugins, its host). */
static void reload_prepare(gw_loop *L, void *arg)
{
    reload_job *j = arg;
    fwx_policy *p = policy_from_text(j->text, j->err, sizeof j->err);
    if (p == NULL || check_policy(L->fw, p, j->err, sizeof j->err) != 0) {
        fwx_policy_free(p);
        j->rc = -1;
        return;
    }
    j->prepared[L->index] = p;
    j->rc = 0;
}

/* On each loop in turn: the prepared policy in force. A failure leaves it in force all the
   same (fwx_firewall_set_policy), so the caller rolls this loop back too. */
static void reload_commit(gw_loop *L, void *arg)
{
    reload_job *j = arg;
    fwx_policy *p = j->prepared[L->index];
    j->prepared[L->index] = NULL;
    j->rc = 0;
    if (FWX_FAILED(fwx_firewall_set_policy(L->fw, p))) {
        snprintf(j->err, sizeof j->err, "%s", fwx_firewall_last_error(L->fw));
        j->rc = -1;
    }
}

/* Rolling back: the running text's policy again (made the same way it was the first time). */
static void reload_restore(gw_loop *L, void *arg)
{
    reload_job *j = arg;
    fwx_policy *p = policy_from_text(j->text, j->err, sizeof j->err);
    j->rc = 0;
    if (p == NULL || FWX_FAILED(fwx_firewall_set_policy(L->fw, p))) {
        if (p != NULL)
            snprintf(j->err, sizeof j->err, "%s", fwx_firewall_last_error(L->fw));
        j->rc = -1;
    }
}

/* After every loop took the policy: the gateway group's timeouts and log level (cannot fail). */
static void reload_settings(gw_loop *L, void *arg)
{
    const settings *probe = arg;
    apply_timeouts(L->fw, probe);
    if (L->index != 0 && !g.cli_level) /* loop 0's firewall follows in apply_gateway_settings */
        (void)fwx_firewall_set_log_level(L->fw, probe->level);
}

/* Runs fn on every loop 0..n-1 in order, stopping at the first that sets rc; that loop's index,
   or n when all ran. A loop that does not answer is one that refused. */
static unsigned reload_each(unsigned n, gw_loop_fn fn, reload_job *j)
{
    for (unsigned i = 0; i < n; i++) {
        j->rc = 0;
        j->err[0] = '\0';
        if (gw_loop_call(gw_loop_at(i), fn, j) != 0) {
            j->rc = -1;
            snprintf(j->err, sizeof j->err, "it did not answer");
        }
        if (j->rc != 0)
            return i;
    }
    return n;
}

/* Reloads the file: 0 when the new policy runs on every loop, -1 (reason in msg) when it was
   refused and every loop keeps the running one. */
static int do_reload(char *msg, size_t msglen)
{
    if (g.config_path == NULL && g.listen[0] == '\0') {
        snprintf(msg, msglen, "nothing to reload without a policy");
        say(FWX_LOG_INFO, "reload: %s", msg);
        return -1;
    }
    notify_reloading();
    char err[1100];
    /* The whole file is checked, its gateway group too: a reload that says "reloaded" while
       half the file is broken would leave a surprise for the next start. */
    settings probe;
    settings_defaults(&probe);
    char *text = NULL;
    reload_job *job = calloc(1, sizeof *job);
    unsigned n = g.n_loops > 0 ? g.n_loops : 1, at;
    if (job == NULL) {
        snprintf(err, sizeof err, "out of memory");
        goto refused;
    }
    if (g.config_path != NULL && settings_load(g.config_path, &probe, err, sizeof err) != 0)
        goto refused;
    fwx_config_error e;
    if (g.config_path != NULL && fwx_config_read_file(g.config_path, &text, &e) != FWX_S_OK) {
        snprintf(err, sizeof err, "%s:%d: %s%s%s", e.file, e.line, e.key, e.key[0] ? ": " : "", e.message);
        goto refused;
    }
    job->text = text;
    if ((at = reload_each(n, reload_prepare, job)) < n) {
        if (n > 1)
            snprintf(err, sizeof err, "event loop %u refused it: %s", at, job->err);
        else
            snprintf(err, sizeof err, "%s", job->err);
        goto refused;
    }
    if ((at = reload_each(n, reload_commit, job)) < n) {
        /* Loops 0..at took it (at failed half-way, its policy in force without a listener): back to
           the running text on each, in loop order, as listeners are opened (doc/architecture.md,
           "Threads"). Known gap: a rule the new text removed is reopened on 0..at while loops
           after `at` kept theirs, so in that rule's SO_REUSEPORT group the sockets are no longer
           in loop order until the next start: its clients may meet another loop there. */
        if (n > 1)
            snprintf(err, sizeof err, "event loop %u could not put it in force: %s (every loop went back to the "
                     "running policy)", at, job->err);
        else
            snprintf(err, sizeof err, "%s (back to the running policy)", job->err);
        job->text = g.policy_text;
        for (unsigned i = 0; i <= at; i++) {
            job->rc = 0;
            job->err[0] = '\0';
            if (gw_loop_call(gw_loop_at(i), reload_restore, job) != 0 || job->rc != 0)
                say(FWX_LOG_ERROR, "reload: event loop %u: cannot go back to the running policy: %s (restart the "
                    "gateway)", i, job->err[0] ? job->err : "it did not answer");
        }
        goto refused;
    }
    if (text != NULL) {
        free(g.policy_text);
        g.policy_text = text;
    }
    if (g.config_path != NULL) {
        for (unsigned i = 0; i < n; i++)
            (void)gw_loop_call(gw_loop_at(i), reload_settings, &probe);
        apply_gateway_settings(&probe);
    }
    snprintf(msg, msglen, "policy reloaded");
    say(FWX_LOG_INFO, n > 1 ? "policy reloaded on %u event loops" : "policy reloaded", n);
    free(job);
    notify("READY=1");
    return 0;
refused:
    if (job != NULL)
        for (unsigned i = 0; i < GW_MAX_LOOPS; i++)
            fwx_policy_free(job->prepared[i]);
    free(job);
    free(text);
    snprintf(msg, msglen, "reload refused, keeping the running policy: %s", err);
    say(FWX_LOG_ERROR, "%s", msg);
    notify("READY=1");
    return -1;
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    if (signum != SIGHUP) {
        shutdown_gateway(signum);
        return;
    }
    char msg[1200];
    (void)do_reload(msg, sizeof msg);
}

/* ---- the control socket's and the metrics' part ------------------------------------------- */

static int ctl_reload(void *arg, char *msg, size_t msglen)
{
    (void)arg;
    return do_reload(msg, msglen);
}

static char *ctl_metrics(void *arg)
{
    (void)arg;
    return gw_metrics_text();
}

static void ctl_log(void *arg, fwx_log_level level, const char *line)
{
    (void)arg;
    say(level, "%s", line);
}

static void deliver_event(const fwx_event *ev);
static void forward_event(const fwx_event *ev);

/* Every loop's event sink (arg: its gw_loop). */
static void on_event(void *arg, const fwx_event *ev)
{
    gw_loop *L = arg;
    gw_metrics_event(ev);
    if (L->index == 0)
        deliver_event(ev);
    else
        forward_event(ev);
}

/* The control sockets' view of the loops (ctl_hooks): loop i's firewall, on its thread. */
static unsigned ctl_loops(void *arg)
{
    (void)arg;
    return g.n_loops;
}

typedef struct ctl_call {
    void (*fn)(fwx_firewall *fw, void *arg);
    void *arg;
    bool ran;
} ctl_call;

static void ctl_call_on(gw_loop *L, void *arg)
{
    ctl_call *c = arg;
    if (L->fw != NULL) {
        c->fn(L->fw, c->arg);
        c->ran = true;
    }
}

static int ctl_on_loop(void *arg, unsigned i, void (*fn)(fwx_firewall *fw, void *fnarg), void *fnarg)
{
    (void)arg;
    ctl_call c = {fn, fnarg, false};
    gw_loop *L = i < g.n_loops ? gw_loop_at(i) : NULL;
    return L != NULL && gw_loop_call(L, ctl_call_on, &c) == 0 && c.ran ? 0 : -1;
}

static void ctl_loop_served(void *arg, unsigned i, uint64_t *sessions, uint64_t *connections)
{
    (void)arg;
    gw_metrics_loop_served(i, sessions, connections);
}

/* Whether a TCP listener could be opened on ADDR:PORT now: the address is this host's, the
   port free, and binding it allowed (below 1024 takes CAP_NET_BIND_SERVICE). */
static int check_bindable(const char *key, const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss, 1) != 0) {
        snprintf(err, errlen, "gateway.%s: \"%s\" is not ADDR:PORT", key, addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss,
             ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) != 0) {
        int e = errno;
        snprintf(err, errlen, "gateway.%s: cannot listen on %s: %s%s", key, addr, strerror(e),
                 e == EADDRNOTAVAIL ? " (this host does not hold that address)"
                 : e == EADDRINUSE  ? " (another program listens there)"
                 : e == EACCES      ? " (a port below 1024 needs CAP_NET_BIND_SERVICE)"
                                    : "");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* The control socket's directory takes it, and no other gateway holds its name. */
static int check_control_path(const char *path, char *err, size_t errlen)
{
    /* The directory must take the socket, and no other gateway may hold its name. */
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, "%s", slash == dir ? "/" : ".");
    if (access(dir, W_OK | X_OK) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "control socket %s: directory %s is not writable by this user: %s", path,
                 dir, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    bool taken = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
    if (fd >= 0)
        close(fd);
    if (taken) {
        snprintf(err, errlen, "control socket %s: another gateway is listening there (give this one its own "
                 "control_socket)", path);
        return -1;
    }
    return 0;
}

/* What --check adds to the checks a start shares with it (the file, the plugins, the policy
   against them, the control socket's directory): what else would stop a start, without
   opening anything for good. */
static int check_start(char *err, size_t errlen)
{
    if (g.cfg.socks[0] != '\0' && check_bindable("socks", g.cfg.socks, err, errlen) != 0)
        return -1;
    if (g.cfg.metrics_listen[0] != '\0' && check_bindable("metrics_listen", g.cfg.metrics_listen, err, errlen) != 0)
        return -1;
    if (g.cfg.control[0] != '\0' && check_control_path(g.cfg.control, err, errlen) != 0)
        return -1;
    for (int i = 0; i < g.cfg.n_extra; i++)
        if (check_control_path(g.cfg.extra[i].path, err, errlen) != 0)
            return -1;
    return 0;
}

/* "auto" tries the kernel first: the nft backend has already said in one line what is missing
   (no CAP_NET_ADMIN, no nf_tables, ...), so the fallback only says which backend runs instead. */
static fwx_result open_backend(fwx_firewall *fw)
{
    /* Loops 1..N-1 run what loop 0 runs. */
    const char *name = g.backend != NULL ? g.backend : strcmp(g.cfg.backend, "proxy") == 0 ? "proxy" : "nft";
    fwx_result hr = fwx_firewall_set_backend(fw, name);
    if (FWX_FAILED(hr) && g.backend == NULL && strcmp(g.cfg.backend, "auto") == 0) {
        say(FWX_LOG_WARN, "kernel mode unavailable here; running the \"proxy\" backend (user mode)");
        name = "proxy";
        hr = fwx_firewall_set_backend(fw, name);
    }
    if (FWX_FAILED(hr))
        fprintf(stderr, "fwx-gateway: backend \"%s\": %s\n", name, fwx_firewall_last_error(fw));
    else
        g.backend = name;
    return hr;
}

/* ---- the event loops ------------------------------------------------------------------------
 * Every loop builds the same firewall (setup_firewall): the options, the plugins, the backend,
 * its own copy of the policy, the SOCKS listener. Loop 0 does it on the main thread before the
 * others start; loops 1..N-1 do it on their own threads (worker_setup). */

/* 0: running; -1: --check passed; 1: a failure at run time; 2: the configuration refused. */
static int setup_firewall(gw_loop *L)
{
    char err[1024];
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.name = g.cfg.name;
    o.log = log_line;
    o.log_arg = L;
    o.log_level = g.check_only && g.cfg.level > FWX_LOG_WARN ? FWX_LOG_WARN : g.cfg.level;
    o.local_addresses = g.cfg.local;
    o.n_local_addresses = (size_t)g.cfg.n_local;
    o.timeout_ms = g.cfg.timeout_s * 1000;
    o.loopback_hosts = g.cfg.loopback_hosts;
    o.kernel_end_on_close = g.cfg.kernel_end_on_close;
    o.kernel_open_on_stop = g.cfg.open_on_stop;
    gw_limits_options(&g.cfg.limits, &o);
    o.plugin_soft_limit_ms = g.cfg.plugin_soft_ms;
    o.plugin_hard_limit_ms = g.cfg.plugin_hard_ms;
    if (g.cfg.port_min) {
        o.port_min = (uint16_t)g.cfg.port_min;
        o.port_max = (uint16_t)g.cfg.port_max;
    }
    o.listen_shared = g.n_loops;
    /* A client's own caps hold as they are: its connections reach one loop. The caps in all
       of the core are each loop's: split evenly, so that together they stay within the cap
       (the SOCKS caps in all are counted for the whole process by the library). */
    if (g.n_loops > 1) {
        uint32_t *all[] = {&o.max_permissions, &o.max_ports, &o.max_sessions};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            *all[i] = *all[i] / g.n_loops > 0 ? *all[i] / g.n_loops : 1;
    }
    fwx_firewall *fw = NULL;
    if (fwx_firewall_new(L->loop, &o, &fw) != FWX_S_OK) {
        fprintf(stderr, "fwx-gateway: cannot create the firewall\n");
        return 1;
    }
    L->fw = fw;
    if (L->index == 0)
        g.fw = fw;
    apply_timeouts(fw, &g.cfg);
    if (g.cfg.json_logs == LOG_JSON) /* before the plugins: their lines carry fields too */
        fwx_firewall_set_log_sink(fw, json_record_locked, L);
    /* Every interface address is the gateway's own, followed as they change; local_addresses
       adds more. */
    if (FWX_FAILED(fwx_firewall_track_local_addresses(fw)) && L->index == 0)
        fprintf(stderr, "fwx-gateway: warning: only local_addresses count as the gateway's own\n");
    /* --check goes as far as a start does short of opening sockets, so that what passes
       the check starts: the plugins load, and the policy's filters and addresses fit them. */
    int status = load_plugins(fw);
    /* A SOCKS-only quick form has no rule to build: the firewall runs without a policy. */
    bool no_policy = g.config_path == NULL && g.listen[0] == '\0';
    fwx_policy *policy = status == 0 && !no_policy ? load_policy(err, sizeof err) : NULL;
    if (no_policy && !g.check_only && L->index == 0)
        say(FWX_LOG_WARN, "no policy: every destination is allowed (give --config for rules)");
    if (status == 0 && policy == NULL && !no_policy) {
        fprintf(stderr, "fwx-gateway: %s\n", err);
        status = 2;
    }
    if (status == 0 && policy != NULL && check_policy(fw, policy, err, sizeof err) != 0) {
        fprintf(stderr, "fwx-gateway: %s\n", err);
        fwx_policy_free(policy);
        policy = NULL;
        status = 2;
    }
    if (status == 0 && g.check_only && check_start(err, sizeof err) != 0) {
        fprintf(stderr, "fwx-gateway: %s\n", err);
        fwx_policy_free(policy);
        policy = NULL;
        status = 2;
    }
    if (status == 0 && g.check_only) {
        printf("fwx-gateway: %s is valid\n", g.config_path ? g.config_path : "the command line");
        fwx_policy_free(policy);
        return -1; /* close and exit 0 */
    }
    if (status == 0 && FWX_FAILED(open_backend(fw))) {
        fwx_policy_free(policy);
        status = 1;
    }
    if (status == 0 && !no_policy && FWX_FAILED(fwx_firewall_set_policy(fw, policy))) {
        fprintf(stderr, "fwx-gateway: %s\n", fwx_firewall_last_error(fw));
        status = 1;
    }
    for (int i = 0; status == 0 && L->index == 0 && i < g.cfg.n_redirects; i++) {
        const local_redirect *lr = &g.cfg.redirects[i];
        fwx_local_redirect spec;
        memset(&spec, 0, sizeof spec);
        spec.struct_size = sizeof spec;
        spec.protocol = FWX_PROTOCOL_TCP;
        spec.port_min = (uint16_t)lr->port_min;
        spec.port_max = (uint16_t)lr->port_max;
        spec.slot = lr->slot;
        spec.uid = lr->uid;
        spec.cgroup = lr->cgroup[0] ? lr->cgroup : NULL;
        if (FWX_FAILED(fwx_firewall_redirect_local(fw, &spec))) {
            fprintf(stderr, "fwx-gateway: local_redirect entry %d: %s\n", i, fwx_firewall_last_error(fw));
            status = 1;
        }
    }
    if (status == 0 && g.cfg.socks[0] != '\0' && g.cfg.socks_users[0] != '\0' &&
        FWX_FAILED(fwx_proxy_socks_set_users(fw, g.cfg.socks_users))) {
        fprintf(stderr, "fwx-gateway: gateway.socks_users: %s cannot be used (see the log)\n", g.cfg.socks_users);
        status = 1;
    }
    if (status == 0 && g.cfg.socks[0] != '\0') {
        struct sockaddr_storage sa;
        parse_addr(g.cfg.socks, &sa, 1);
        fwx_result hr = FWX_S_OK;
        if (g.cfg.limits.socks.struct_size != 0 && FWX_FAILED(hr = fwx_proxy_socks_set_limits(fw, &g.cfg.limits.socks)))
            fprintf(stderr, "fwx-gateway: socks_limits: %s\n", fwx_strerror(hr));
        else
            hr = fwx_proxy_socks_listen(fw, (struct sockaddr *)&sa,
                                        sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                                : sizeof(struct sockaddr_in6));
        if (FWX_FAILED(hr)) {
            fprintf(stderr, "fwx-gateway: socks %s: %s\n", g.cfg.socks, fwx_strerror(hr));
            status = 1;
        } else if (L->index == 0) {
            say(FWX_LOG_INFO, "socks5 on %s", g.cfg.socks);
        }
    }
    if (status == 0)
        fwx_firewall_set_event_sink(fw, on_event, L);
    return status;
}

static int worker_setup(gw_loop *L, void *arg)
{
    (void)arg;
    L->quiet = true; /* plugins loaded, backend, ...: loop 0 said it */
    int status = setup_firewall(L);
    L->quiet = false;
    if (status == 0)
        gw_metrics_loop_start(L->index, L->loop, L->fw);
    return status;
}

static void worker_closed(fwx_firewall *fw, void *arg)
{
    (void)fw;
    ((gw_loop *)arg)->fw = NULL;
}

/* On loop L, asked by loop 0 at shutdown (or after a failed start): closes what it holds. */
static void worker_stop(gw_loop *L, void *arg)
{
    (void)arg;
    gw_metrics_loop_stop(L->index);
    if (L->fw != NULL)
        fwx_firewall_close(L->fw, worker_closed, L);
}

/* ---- events of every loop to the control sockets -------------------------------------------
 * The control servers live on loop 0. Another loop's event is copied (its strings too) and
 * queued to loop 0, only while some client listens (`events`), so a busy loop pays nothing. */

typedef struct fwd_event {
    struct fwd_event *next;
    fwx_event ev;
    char text[]; /* the four strings, one after the other */
} fwd_event;

static void deliver_event(const fwx_event *ev)
{
    ctl_server_event(g.ctl, ev);
    for (int i = 0; i < MAX_EXTRA_CTL; i++)
        ctl_server_event(g.ctl_extra[i], ev);
}

static void on_forwarded_events(uv_async_t *a)
{
    (void)a;
    uv_mutex_lock(&g.ev_lock);
    fwd_event *list = g.ev_head;
    g.ev_head = g.ev_tail = NULL;
    uv_mutex_unlock(&g.ev_lock);
    for (fwd_event *e = list, *next; e != NULL; e = next) {
        next = e->next;
        deliver_event(&e->ev);
        free(e);
    }
}

static void forward_event(const fwx_event *ev)
{
    const char *strs[4] = {ev->reason, ev->rule, ev->name, ev->detail};
    size_t lens[4], total = 0;
    for (int i = 0; i < 4; i++)
        total += lens[i] = strs[i] != NULL ? strlen(strs[i]) + 1 : 0;
    uv_mutex_lock(&g.ev_lock);
    unsigned listeners = 0;
    if (g.ev_open) { /* the servers are closed only after ev_open is false */
        listeners = ctl_server_event_clients(g.ctl);
        for (int i = 0; i < MAX_EXTRA_CTL; i++)
            listeners += ctl_server_event_clients(g.ctl_extra[i]);
    }
    fwd_event *e = listeners > 0 ? malloc(sizeof *e + total) : NULL;
    if (e != NULL) {
        e->next = NULL;
        e->ev = *ev;
        char *p = e->text;
        const char **dst[4] = {&e->ev.reason, &e->ev.rule, &e->ev.name, &e->ev.detail};
        for (int i = 0; i < 4; i++) {
            *dst[i] = strs[i] != NULL ? memcpy(p, strs[i], lens[i]) : NULL;
            p += lens[i];
        }
        if (g.ev_tail != NULL)
            g.ev_tail->next = e;
        else
            g.ev_head = e;
        g.ev_tail = e;
        uv_async_send(&g.ev_async);
    }
    uv_mutex_unlock(&g.ev_lock);
}

/* Loop 0: no more forwarded events (before the control servers close). */
static void events_close(void)
{
    if (!g.ev_open)
        return;
    uv_mutex_lock(&g.ev_lock);
    g.ev_open = false;
    fwd_event *list = g.ev_head;
    g.ev_head = g.ev_tail = NULL;
    uv_mutex_unlock(&g.ev_lock);
    for (fwd_event *e = list, *next; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    uv_close((uv_handle_t *)&g.ev_async, NULL);
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: fwx-gateway --config FILE [--check]\n"
               "       fwx-gateway --listen ADDR:PORT --upstream ADDR:PORT [--plugin NAME|PATH]... [--socks ADDR:PORT]\n"
               "       fwx-gateway --socks ADDR:PORT [--plugin NAME|PATH]...\n"
               "options: --plugin-dir DIR  --control PATH|--no-control  --log-format text|json|journal  --log-level error|warn|info|debug\n"
               "         --name NAME  --verbose  --backend proxy|nft|auto  --threads N  --version  --help\n"
               "         --loopback-hosts (127.0.0.x other than the gateway's own are ordinary hosts)\n");
}

/* Each relayed connection holds several descriptors (client, server, a pipe per direction):
   the default soft limit of 1024 caps a busy gateway at a few hundred connections although the
   hard limit allows far more. Raise it to the hard limit; what is left is
   logged when it runs out. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fprintf(stderr, "fwx-gateway: cannot raise the file descriptor limit from %llu: %s\n",
                (unsigned long long)was, strerror(errno));
}

int main(int argc, char **argv)
{
    raise_fd_limit();
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},     {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'},   {"plugin", required_argument, NULL, 'p'},
        {"plugin-dir", required_argument, NULL, 'd'}, {"control", required_argument, NULL, 's'},
        {"log-format", required_argument, NULL, 'f'}, {"name", required_argument, NULL, 'n'},
        {"check", no_argument, NULL, 'k'},            {"verbose", no_argument, NULL, 'v'},
        {"loopback-hosts", no_argument, NULL, 'L'},   {"socks", required_argument, NULL, 'S'},
        {"log-level", required_argument, NULL, 'E'},   {"backend", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},             {"version", no_argument, NULL, 'V'},
        {"no-control", no_argument, NULL, 'N'},       {"threads", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    settings_defaults(&g.cfg);
    char cli_plugins[MAX_PLUGINS][256];
    int n_cli_plugins = 0, check_only = 0;
    const char *cli_dir = NULL, *cli_control = NULL, *cli_format = NULL, *cli_name = NULL;
    int c, verbose = 0;
    int cli_loopback = 0, cli_no_control = 0;
    const char *cli_socks = NULL, *cli_level = NULL, *cli_backend = NULL;
    const char *cli_threads = NULL;
    while ((c = getopt_long(argc, argv, "c:l:u:p:d:s:f:n:kvhVLS:E:B:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            g.config_path = optarg;
            break;
        case 'l':
            snprintf(g.listen, sizeof g.listen, "%s", optarg);
            break;
        case 'u':
            snprintf(g.upstream, sizeof g.upstream, "%s", optarg);
            break;
        case 'p':
            if (n_cli_plugins >= MAX_PLUGINS) {
                fprintf(stderr, "fwx-gateway: at most %d plugins\n", MAX_PLUGINS);
                return 2;
            }
            snprintf(cli_plugins[n_cli_plugins++], sizeof cli_plugins[0], "%s", optarg);
            break;
        case 'd':
            cli_dir = optarg;
            break;
        case 's':
            cli_control = optarg;
            break;
        case 'f':
            cli_format = optarg;
            break;
        case 'n':
            cli_name = optarg;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'L':
            cli_loopback = 1;
            break;
        case 'S':
            cli_socks = optarg;
            break;
        case 'E':
            cli_level = optarg;
            break;
        case 'B':
            cli_backend = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'N':
            cli_no_control = 1;
            break;
        case 'T':
            cli_threads = optarg;
            break;
        case 'V': /* what it was built against and what it runs with: they differ after an upgrade */
            printf("fwx-gateway %s (libfwx %s)\n", FWX_VERSION_STRING, fwx_version_string());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct sockaddr_storage tmp;
    if (optind != argc || (g.config_path == NULL && (g.listen[0] == '\0') != (g.upstream[0] == '\0')) ||
        (g.config_path == NULL && g.listen[0] == '\0' && cli_socks == NULL) ||
        (g.config_path != NULL && (g.listen[0] || g.upstream[0]))) {
        usage(stderr);
        return 2;
    }
    if (g.config_path == NULL && g.listen[0] && (parse_addr(g.listen, &tmp, 1) != 0 || parse_addr(g.upstream, &tmp, 1) != 0)) {
        fprintf(stderr, "fwx-gateway: --listen and --upstream take ADDR:PORT (such as 127.0.0.1:2121)\n");
        return 2;
    }
    char err[1024];
    if (g.config_path != NULL && settings_load(g.config_path, &g.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fwx-gateway: %s\n", err);
        return 2;
    }
    g.file_cfg = g.cfg;
    g.cli_level = cli_level != NULL;
    /* The command line wins over the file. */
    if (cli_dir)
        snprintf(g.cfg.plugin_dir, sizeof g.cfg.plugin_dir, "%s", cli_dir);
    if (cli_control)
        snprintf(g.cfg.control, sizeof g.cfg.control, "%s", cli_control);
    if (cli_no_control)
        g.cfg.control[0] = '\0';
    /* A socket in a directory others can write could be taken over; refused before anything
       is opened, at --check as at a start (which creates the default directory if missing). */
    if (g.cfg.control[0] != '\0' && ctl_path_check(g.cfg.control, !check_only, err, sizeof err) != 0) {
        fprintf(stderr, "fwx-gateway: control socket %s: %s\n", g.cfg.control, err);
        return 2;
    }
    for (int i = 0; i < g.cfg.n_extra; i++) {
        if (ctl_path_check(g.cfg.extra[i].path, !check_only, err, sizeof err) != 0) {
            fprintf(stderr, "fwx-gateway: control socket %s: %s\n", g.cfg.extra[i].path, err);
            return 2;
        }
        if (strcmp(g.cfg.extra[i].path, g.cfg.control) == 0) {
            fprintf(stderr, "fwx-gateway: gateway.control_sockets: %s is the control socket already\n",
                    g.cfg.extra[i].path);
            return 2;
        }
    }
    if (cli_name)
        snprintf(g.cfg.name, sizeof g.cfg.name, "%s", cli_name);
    if (cli_threads != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long t = strtoul(cli_threads, &end, 10);
        if (!isdigit((unsigned char)cli_threads[0]) || *end != '\0' || errno != 0 || t > GW_MAX_LOOPS) {
            fprintf(stderr, "fwx-gateway: --threads takes a number of event loops from 1 to %d, or 0 for one per CPU\n",
                    GW_MAX_LOOPS);
            return 2;
        }
        g.cfg.threads = (unsigned)t;
    }
    if (cli_format) {
        g.cfg.json_logs = log_format_parse(cli_format);
        if (g.cfg.json_logs < 0) {
            fprintf(stderr, "fwx-gateway: --log-format takes text, json or journal (syslog)\n");
            return 2;
        }
    } else if (!g.cfg.log_format_given && svc_journal_stream(STDOUT_FILENO)) {
        g.cfg.json_logs = LOG_JOURNAL; /* systemd: the journal stamps and ranks each line */
    }
    if (cli_level != NULL) {
        static const char *lv[] = {"error", "warn", "info", "debug"};
        int l = 0;
        while (l < 4 && strcmp(lv[l], cli_level) != 0)
            l++;
        if (l == 4) {
            fprintf(stderr, "fwx-gateway: --log-level takes error, warn, info or debug\n");
            return 2;
        }
        g.cfg.level = (fwx_log_level)l;
    }
    if (cli_backend != NULL) {
        if (!backend_known(cli_backend)) {
            fprintf(stderr, "fwx-gateway: --backend takes proxy, nft or auto\n");
            return 2;
        }
        snprintf(g.cfg.backend, sizeof g.cfg.backend, "%s", cli_backend);
    }
    if (g.cfg.n_redirects > 0 && strcmp(g.cfg.backend, "nft") != 0) {
        fprintf(stderr, "fwx-gateway: local_redirect needs backend = \"nft\"\n");
        return 2;
    }
    if (g.cfg.socks[0] != '\0' && strcmp(g.cfg.backend, "proxy") != 0) {
        fprintf(stderr, "fwx-gateway: socks needs the \"proxy\" backend (it is a proxy protocol)\n");
        return 2;
    }
    if (verbose)
        g.cfg.level = FWX_LOG_DEBUG;
    if (cli_loopback)
        g.cfg.loopback_hosts = 1;
    if (cli_socks != NULL) {
        if (parse_addr(cli_socks, &tmp, 1) != 0 || strlen(cli_socks) >= sizeof g.cfg.socks) {
            fprintf(stderr, "fwx-gateway: --socks takes ADDR:PORT (such as 127.0.0.1:1080)\n");
            return 2;
        }
        snprintf(g.cfg.socks, sizeof g.cfg.socks, "%s", cli_socks);
    }
    for (int i = 0; i < n_cli_plugins && g.cfg.n_plugins < MAX_PLUGINS; i++)
        snprintf(g.cfg.plugins[g.cfg.n_plugins++], sizeof g.cfg.plugins[0], "%s", cli_plugins[i]);

    /* Check the policy before anything is opened: a bad file must not half-start a gateway. */
    if (g.config_path != NULL) {
        fwx_policy *probe = NULL;
        fwx_config_error e;
        if (fwx_policy_load_file(g.config_path, &probe, &e) != FWX_S_OK) {
            fprintf(stderr, "fwx-gateway: %s:%d: %s%s%s\n", e.file, e.line, e.key, e.key[0] ? ": " : "", e.message);
            return 2;
        }
        fwx_policy_free(probe);
    }
    if (g.cfg.socks_users[0] != '\0') {
        char why[600];
        if (FWX_FAILED(fwx_proxy_socks_users_check(g.cfg.socks_users, why, sizeof why))) {
            fprintf(stderr, "fwx-gateway: gateway.socks_users: %s\n", why);
            return 2;
        }
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    g.loop = &loop;
    g.check_only = check_only;
    /* One event loop per CPU this process may run on, unless told; --check builds one. */
    unsigned n = g.cfg.threads;
    if (n == 0) {
        cpu_set_t cpus;
        n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? (unsigned)CPU_COUNT(&cpus) : 1;
        if (n < 1)
            n = 1;
        if (n > GW_MAX_LOOPS)
            n = GW_MAX_LOOPS;
    }
    if (check_only)
        n = 1;
    g.n_loops = n;
    if (gw_loops_init(&loop, n) != 0) {
        fprintf(stderr, "fwx-gateway: cannot prepare %u event loops\n", n);
        return 1;
    }
    gw_loop *L0 = gw_loop_at(0);
    char err2[1024];
    int status = read_policy_text(err2, sizeof err2) == 0 ? 0 : 2;
    if (status != 0)
        fprintf(stderr, "fwx-gateway: %s\n", err2);
    if (status == 0)
        status = setup_firewall(L0);
    g.fw = L0->fw;
    if (status == 0 && g.n_loops > 1 && strcmp(g.backend, "proxy") != 0) {
        /* The kernel table is the gateway's one: the nft backend runs on one loop. */
        if (g.cfg.threads > 1) {
            fprintf(stderr, "fwx-gateway: threads = %u: the \"%s\" backend runs one event loop (its nftables "
                            "table is one per gateway); give threads = 1\n", g.cfg.threads, g.backend);
            status = 2;
        } else {
            say(FWX_LOG_INFO, "backend %s: one event loop (the kernel carries what no filter sees)", g.backend);
        }
        g.n_loops = 1;
    }
    if (status == 0) {
        gw_metrics_start(&loop, g.fw, g.backend);
        if (g.cfg.metrics_listen[0] != '\0' && gw_metrics_listen(g.cfg.metrics_listen, err, sizeof err) != 0) {
            fprintf(stderr, "fwx-gateway: gateway.%s\n", err);
            status = 1;
        }
    }
    if (status == 0) {
        uv_mutex_init(&g.ev_lock);
        uv_async_init(&loop, &g.ev_async, on_forwarded_events);
        g.ev_open = true;
    }
    /* Loops 1..N-1, one after the other: each says whether it could start before the next. */
    for (unsigned i = 1; status == 0 && i < g.n_loops; i++) {
        int st = gw_loop_start(gw_loop_at(i), worker_setup, worker_stop, NULL);
        if (st != 0) {
            fprintf(stderr, "fwx-gateway: event loop %u could not start\n", i);
            status = st < 0 ? 1 : st;
        }
    }
    if (status == 0 && g.cfg.control[0] != '\0') {
        char cerr[256];
        static const ctl_hooks hooks = {.reload = ctl_reload, .metrics = ctl_metrics, .log = ctl_log,
                                        .loops = ctl_loops, .on_loop = ctl_on_loop, .loop_served = ctl_loop_served};
        /* A group's members must be able to reach a socket in the default directory (0750). */
        size_t dl = strlen(CTL_DEFAULT_DIR);
        if (g.cfg.control_gid >= 0 && strncmp(g.cfg.control, CTL_DEFAULT_DIR "/", dl + 1) == 0 &&
            strchr(g.cfg.control + dl + 1, '/') == NULL && chown(CTL_DEFAULT_DIR, (uid_t)-1, (gid_t)g.cfg.control_gid) != 0)
            say(FWX_LOG_WARN, "cannot give %s to group %s: %s (its members cannot reach the control socket)",
                CTL_DEFAULT_DIR, g.cfg.control_group, strerror(errno));
        ctl_config cc = {.path = g.cfg.control, .mode = g.cfg.control_mode, .gid = g.cfg.control_gid,
                         .level = (ctl_level)g.cfg.control_level, .hooks = &hooks};
        g.ctl = ctl_server_start_with(&loop, g.fw, &cc, cerr, sizeof cerr);
        if (g.ctl == NULL) {
            fprintf(stderr, "fwx-gateway: control socket %s: %s\n", g.cfg.control, cerr);
            status = 1;
        }
    }
    for (int i = 0; status == 0 && i < g.cfg.n_extra; i++) {
        char cerr[256];
        static const ctl_hooks hooks = {.reload = ctl_reload, .metrics = ctl_metrics, .log = ctl_log,
                                        .loops = ctl_loops, .on_loop = ctl_on_loop, .loop_served = ctl_loop_served};
        const extra_ctl *x = &g.cfg.extra[i];
        ctl_config cc = {.path = x->path, .mode = x->mode, .gid = x->gid, .level = (ctl_level)x->level,
                         .hooks = &hooks};
        g.ctl_extra[i] = ctl_server_start_with(&loop, g.fw, &cc, cerr, sizeof cerr);
        if (g.ctl_extra[i] == NULL) {
            fprintf(stderr, "fwx-gateway: control socket %s: %s\n", x->path, cerr);
            status = 1;
        }
    }
    if (status != 0) {
        events_close();
        for (unsigned i = 1; i < g.n_loops; i++)
            gw_loop_stop(gw_loop_at(i));
        if (g.ctl != NULL)
            ctl_server_close(g.ctl);
        for (int i = 0; i < MAX_EXTRA_CTL; i++)
            ctl_server_close(g.ctl_extra[i]);
        gw_metrics_stop();
        if (g.fw != NULL)
            fwx_firewall_close(g.fw, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        gw_loops_join();
        uv_loop_close(&loop);
        free(g.policy_text);
        return status < 0 ? 0 : status;
    }
    uv_signal_init(&loop, &g.sighup);
    uv_signal_init(&loop, &g.sigint);
    uv_signal_init(&loop, &g.sigterm);
    uv_signal_start(&g.sighup, on_signal, SIGHUP);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    say(FWX_LOG_INFO, "ready (%s, backend %s, %d plugin%s, %u event loop%s%s%s)",
        g.config_path ? g.config_path : "command line", g.backend, g.cfg.n_plugins, g.cfg.n_plugins == 1 ? "" : "s",
        g.n_loops, g.n_loops == 1 ? "" : "s", g.cfg.control[0] ? ", control " : "", g.cfg.control);
    notify("READY=1");
    uv_run(&loop, UV_RUN_DEFAULT);
    gw_loops_join();
    free(g.policy_text);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        fprintf(stderr, "fwx-gateway: handles left open at exit: %s\n", uv_strerror(rc));
    return rc == 0 ? 0 : 1;
}
