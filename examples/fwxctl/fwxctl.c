/*
 * fwxctl: shows what a running fwx gateway holds - sessions, connections, permissions, bound
 * ports, plugins - in the manner of `conntrack -L` and `ss`.
 *
 * It talks to the gateway's control socket (examples/common/ctl.h describes the protocol): one
 * request line, an answer of flat JSON objects, one per line, ending with {"end":true}. Plain C
 * and POSIX sockets; it does not link libfwx, so it runs wherever the socket is reachable. It reads
 * the answers with libjansson and refuses what the server never emits (anything but flat objects
 * whose values are strings, integers, true/false/null or lists of strings).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/fwx/fwx-gateway.sock" /* where fwx-gateway opens it by default */
#ifndef FWXCTL_VERSION
#define FWXCTL_VERSION "unknown" /* meson passes the project's version */
#endif
#define ANSWER_TIMEOUT_MS 10000
#define MAX_LINE (1024 * 1024)

static const char *progname = "fwxctl";

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die(1, "out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ---- one answer line, read with libjansson ------------------------------------------------- */

/* An answer line is one JSON object (examples/common/ctl.h). */
typedef json_t jobj;

/* Parses @p line (without its newline). The server writes flat objects whose values are
   strings, integers, true/false/null or lists of strings: anything else is refused, so that a
   socket that is not fwx's (or a server newer than this tool) is noticed rather than misread. */
static jobj *jobj_parse(const char *line, size_t len, char *err, size_t errlen)
{
    json_error_t e;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &e);
    if (o == NULL) {
        snprintf(err, errlen, "%s (column %d)", e.text, e.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        snprintf(err, errlen, "expected an object");
        json_decref(o);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool flat = json_is_string(v) || json_is_integer(v) || json_is_boolean(v) || json_is_null(v);
        if (json_is_array(v)) {
            size_t i;
            json_t *item;
            flat = true;
            json_array_foreach(v, i, item) flat &= json_is_string(item);
        }
        if (!flat) {
            snprintf(err, errlen, "unexpected value for \"%s\"", key);
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* A value as table text: "-" for null, missing or empty; a list joined with ",". */
static char *jtext(const jobj *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    char tmp[32];
    char *s;
    if (v == NULL || json_is_null(v))
        return xstrdup("-");
    if (json_is_boolean(v))
        return xstrdup(json_is_true(v) ? "yes" : "no");
    if (json_is_integer(v)) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return xstrdup(tmp);
    }
    if (json_is_array(v)) {
        size_t n = 1, i;
        json_t *item;
        json_array_foreach(v, i, item) n += json_string_length(item) + 1;
        s = xmalloc(n);
        s[0] = '\0';
        json_array_foreach(v, i, item) {
            if (i > 0)
                strcat(s, ",");
            strcat(s, json_string_value(item));
        }
    } else {
        s = xstrdup(json_string_value(v));
    }
    if (s[0] == '\0') {
        free(s);
        return xstrdup("-");
    }
    /* Names and paths come from plugins and users: never pass control bytes to a terminal. */
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
    return s;
}

static const char *jstr(const jobj *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static bool jnum(const jobj *o, const char *key, long long *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return false;
    *out = (long long)json_integer_value(v);
    return true;
}

static bool jtrue(const jobj *o, const char *key) { return json_is_true(json_object_get(o, key)); }

/* ---- tables ------------------------------------------------------------------------------------ */

#define MAX_COLS 12

/* A column: its heading and the answer's key it shows (jtext; "age_ms" and "expires_in_ms" as
   fmt_age and fmt_expires write them). */
typedef struct column {
    const char *head;
    const char *key;
} column;

typedef struct table {
    const char *title; /* for "all" */
    size_t ncols;
    column col[MAX_COLS];
    char **cells; /* rows * ncols */
    size_t rows;
    size_t cap;
} table;

static void table_add(table *t, char **row)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, t->cap * t->ncols * sizeof *c);
        if (c == NULL)
            die(1, "out of memory");
        t->cells = c;
    }
    memcpy(t->cells + t->rows * t->ncols, row, t->ncols * sizeof *row);
    t->rows++;
}

/* Columns a cell takes: one per UTF-8 character (wide characters are rare in these tables). */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void table_print(const table *t)
{
    size_t w[MAX_COLS];
    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = text_width(t->col[c].head);
        for (size_t r = 0; r < t->rows; r++) {
            size_t l = text_width(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    }
    for (size_t r = 0; r <= t->rows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = r == 0 ? t->col[c].head : t->cells[(r - 1) * t->ncols + c];
            if (c + 1 == t->ncols)
                printf("%s\n", s);
            else
                printf("%s%*s", s, (int)(w[c] - text_width(s) + 2), "");
        }
    }
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->rows = t->cap = 0;
}

/* "42s", "3m05s", "2h07m", "3d04h" from seconds. */
static char *fmt_secs(unsigned long long s)
{
    char tmp[48];
    if (s < 60)
        snprintf(tmp, sizeof tmp, "%llus", s);
    else if (s < 3600)
        snprintf(tmp, sizeof tmp, "%llum%02llus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(tmp, sizeof tmp, "%lluh%02llum", s / 3600, s / 60 % 60);
    else
        snprintf(tmp, sizeof tmp, "%llud%02lluh", s / 86400, s / 3600 % 24);
    return xstrdup(tmp);
}

static char *fmt_age(const jobj *o)
{
    long long ms;
    if (!jnum(o, "age_ms", &ms) || ms < 0)
        return xstrdup("-");
    return fmt_secs((unsigned long long)ms / 1000);
}

static char *fmt_expires(const jobj *o)
{
    long long ms;
    if (!jnum(o, "expires_in_ms", &ms))
        return xstrdup("never");
    /* In seconds, rounded up: a grant that is still there never shows 0s. */
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%llus", ms <= 0 ? 0ULL : ((unsigned long long)ms + 999) / 1000);
    return xstrdup(tmp);
}

/* ---- what each command asks and shows ----------------------------------------------------------- */

enum { T_PLUGINS, T_SESSIONS, T_CONNECTIONS, T_PERMISSIONS, T_PORTS, T_REDIRECTS, T_LOOPS, T_COUNT };

/* The grants' two tables show the same columns. */
#define GRANT_COLUMNS                                                                                         \
    {{"ID", "id"}, {"SESSION", "session"}, {"KIND", "name"}, {"PROTO", "protocol"}, {"MODE", "mode"},            \
     {"CLIENT", "client"}, {"TARGET", "peer"}, {"GATEWAY", "local"}, {"EXPIRES", "expires_in_ms"},              \
     {"FLAGS", "flag_names"}, {"OWNER", "owner"}, {"LOOP", "loop"}}

static table tables[T_COUNT] = {
    [T_PLUGINS] = {"plugins", 5,
                   {{"ID", "id"}, {"NAME", "name"}, {"GUID", "guid"}, {"HOOKS", "flag_names"}, {"PATH", "owner"}},
                   NULL, 0, 0},
    /* LOOP: the gateway's event loop that holds the object (ids are each loop's own). */
    [T_SESSIONS] = {"sessions", 7,
                    {{"ID", "id"}, {"KIND", "name"}, {"CLIENT", "client"}, {"FLAGS", "flag_names"}, {"USER", "owner"},
                     {"AGE", "age_ms"}, {"LOOP", "loop"}},
                    NULL, 0, 0},
    [T_CONNECTIONS] = {"connections", 11,
                       {{"ID", "id"}, {"SESSION", "session"}, {"PROTO", "protocol"}, {"MODE", "mode"},
                        {"CLIENT", "client"}, {"PEER", "peer"}, {"LOCAL", "local"}, {"BYTES-IN", "bytes_in"},
                        {"BYTES-OUT", "bytes_out"}, {"AGE", "age_ms"}, {"LOOP", "loop"}},
                       NULL, 0, 0},
    [T_PERMISSIONS] = {"permissions", 12, GRANT_COLUMNS, NULL, 0, 0},
    [T_PORTS] = {"ports", 12, GRANT_COLUMNS, NULL, 0, 0},
    [T_REDIRECTS] = {"redirects", 6,
                     {{"FLOW", "flow"}, {"WRITER", "writer"}, {"SLOTS", "slots"}, {"ORIGINAL", "original"},
                      {"APPLICATION", "application"}, {"HOPS", "hops"}},
                     NULL, 0, 0},
    [T_LOOPS] = {"loops", 7,
                 {{"LOOP", "loop"}, {"SESSIONS", "sessions"}, {"CONNECTIONS", "connections"},
                  {"PERMISSIONS", "permissions"}, {"PORTS", "bound_ports"}, {"SESSIONS-SERVED", "sessions_served"},
                  {"CONNECTIONS-SERVED", "connections_served"}},
                 NULL, 0, 0},
};

/* What a command sends and how its answer reads. */
enum { C_LIST, C_ONE, C_KILL, C_EXPLAIN, C_RELOAD, C_EVENTS, C_METRICS };

typedef struct command {
    const char *name;
    const char *request;
    unsigned tables; /* bit per T_*: which objects to keep and show */
    int type;        /* C_* */
    int args;        /* words after the command */
} command;

static const command commands[] = {
    {"sessions", "list sessions", 1u << T_SESSIONS, C_LIST, 0},
    {"connections", "list connections", 1u << T_CONNECTIONS, C_LIST, 0},
    {"permissions", "list grants", 1u << T_PERMISSIONS, C_LIST, 0},
    {"ports", "list grants", 1u << T_PORTS, C_LIST, 0},
    {"plugins", "list plugins", 1u << T_PLUGINS, C_LIST, 0},
    {"stats", "stats", 0, C_ONE, 0},
    {"loops", "loops", 1u << T_LOOPS, C_LIST, 0},
    {"version", "version", 0, C_ONE, 0},
    {"redirects", "redirects", 1u << T_REDIRECTS, C_LIST, 0},
    {"all", "list all", (1u << T_REDIRECTS) - 1, C_LIST, 0}, /* the registry is the host's, not the gateway's */
    {"kill", "kill", 0, C_KILL, 2},
    {"explain", "explain", 0, C_EXPLAIN, 3},
    {"reload", "reload", 0, C_RELOAD, 0},
    {"events", "events", 0, C_EVENTS, 0},
    {"metrics", "metrics", 0, C_METRICS, 0},
};

/* `events` as text: the event's name, then key=value for each field that has a value, in the
   manner of `conntrack -E`. */
static void print_event(const jobj *o)
{
    static const char *const keys[] = {"session", "id",        "protocol", "mode", "client", "peer", "bytes_in",
                                       "bytes_out", "reason", "code",     "rule", "name",   "detail"};
    printf("[%s]", jstr(o, "event"));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *v = json_object_get(o, keys[i]);
        if (v == NULL || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0) ||
            (json_is_integer(v) && json_integer_value(v) == 0 &&
             (strcmp(keys[i], "id") == 0 || strcmp(keys[i], "session") == 0)))
            continue;
        char *t = jtext(o, keys[i]);
        bool quote = strchr(t, ' ') != NULL;
        printf(quote ? " %s=\"%s\"" : " %s=%s", keys[i], t);
        free(t);
    }
    putchar('\n');
    fflush(stdout);
}

static void print_explain(const jobj *o)
{
    char *rule = jtext(o, "rule"), *line = jtext(o, "rule_line"), *proto = jtext(o, "protocol");
    char *src = jtext(o, "source_network"), *dst = jtext(o, "destination_network"), *rel = jtext(o, "relationship");
    char *pub = jtext(o, "published"), *text = jtext(o, "text");
    printf("%s: %s\n", jtrue(o, "allowed") ? "allowed" : "refused", text);
    if (strcmp(line, "0") == 0)
        printf("  rule          the default rule (no rule matched)\n");
    else
        printf("  rule          %s (line %s)\n", rule, line);
    printf("  protocol      %s\n", proto);
    printf("  networks      %s -> %s\n", src, dst);
    printf("  relationship  %s\n", rel);
    if (strcmp(pub, "-") != 0)
        printf("  published by  %s\n", pub);
    free(rule), free(line), free(proto), free(src), free(dst), free(rel), free(pub), free(text);
}

/* Which table an object belongs in, or -1. */
static int object_table(const jobj *o)
{
    const char *kind = jstr(o, "kind");
    if (strcmp(kind, "plugin") == 0)
        return T_PLUGINS;
    if (strcmp(kind, "session") == 0)
        return T_SESSIONS;
    if (strcmp(kind, "connection") == 0)
        return T_CONNECTIONS;
    if (strcmp(kind, "redirect") == 0)
        return T_REDIRECTS;
    if (strcmp(kind, "loop") == 0)
        return T_LOOPS;
    if (strcmp(kind, "grant") == 0) {
        const char *name = jstr(o, "name");
        if (strcmp(name, "permission") == 0 || strcmp(name, "redirect port") == 0)
            return T_PERMISSIONS;
        if (strcmp(name, "bound port") == 0 || strcmp(name, "client bind") == 0)
            return T_PORTS;
    }
    return -1;
}

/* A row of table t from an object: each column's key, as column says. */
static void add_row(int t, const jobj *o)
{
    char *row[MAX_COLS];
    for (size_t c = 0; c < tables[t].ncols; c++) {
        const char *key = tables[t].col[c].key;
        row[c] = strcmp(key, "age_ms") == 0          ? fmt_age(o)
                 : strcmp(key, "expires_in_ms") == 0 ? fmt_expires(o)
                                                     : jtext(o, key);
    }
    table_add(&tables[t], row);
}

static void print_stats(const jobj *o)
{
    if (strcmp(jstr(o, "kind"), "version") == 0) {
        char *proto = jtext(o, "protocol"), *abi = jtext(o, "abi");
        printf("protocol %s, fwx abi %s\n", proto, abi);
        free(proto);
        free(abi);
        return;
    }
    size_t w = 0;
    const char *key;
    json_t *v;
    json_object_foreach((jobj *)o, key, v) if (json_is_integer(v) && strlen(key) > w) w = strlen(key);
    json_object_foreach((jobj *)o, key, v) if (json_is_integer(v))
        printf("%-*s  %lld\n", (int)w, key, (long long)json_integer_value(v));
}

/* ---- the connection ------------------------------------------------------------------------------ */

static int connect_to(const char *path)
{
    struct sockaddr_un sun = {0};
    if (strlen(path) >= sizeof sun.sun_path)
        die(1, "cannot connect to %s: %s", path, strerror(ENAMETOOLONG));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die(1, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
        die(1, "cannot connect to %s: %s", path, strerror(errno));
    return fd;
}

static void send_all(int fd, const char *path, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die(1, "%s: send: %s", path, strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

/* Reads more of the answer into *buf; returns the bytes read, 0 at the end. `events` waits
   as long as it takes (timeout -1). */
static size_t read_some(int fd, const char *path, char *buf, size_t n, int timeout_ms)
{
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            die(1, "%s: poll: %s", path, strerror(errno));
        if (rc == 0)
            die(1, "%s: no answer within %d s", path, ANSWER_TIMEOUT_MS / 1000);
        ssize_t r = recv(fd, buf, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(1, "%s: recv: %s", path, strerror(errno));
        return (size_t)r;
    }
}

static bool reload_failed; /* `reload` was answered with "ok":false */

/* Handles one answer line; returns true at the end marker. */
static bool handle_line(const command *cmd, bool json, const char *path, const char *line, size_t len)
{
    char err[256];
    jobj *o = jobj_parse(line, len, err, sizeof err);
    if (o == NULL)
        die(1, "%s: bad answer: %s", path, err);
    if (json_object_get(o, "error") != NULL) {
        char *msg = jtext(o, "error");
        fprintf(stderr, "%s: %s: %s\n", progname, path, msg);
        free(msg); /* everything goes back before exit, so a leak checker sees none */
        json_decref(o);
        exit(1);
    }
    if (jtrue(o, "end")) {
        json_decref(o);
        return true;
    }
    if (json && cmd->type == C_LIST) {
        int t = object_table(o);
        if (t >= 0 && (cmd->tables & (1u << t)))
            printf("%.*s\n", (int)len, line);
    } else if (json) {
        printf("%.*s\n", (int)len, line);
        if (cmd->type == C_EVENTS)
            fflush(stdout);
        if (cmd->type == C_RELOAD && !jtrue(o, "ok"))
            reload_failed = true;
    } else if (cmd->type == C_EVENTS) {
        if (strcmp(jstr(o, "kind"), "event") == 0)
            print_event(o);
        else if (strcmp(jstr(o, "kind"), "events") == 0) /* as tcpdump says "listening on" */
            fprintf(stderr, "%s: listening for events on %s\n", progname, path);
    } else if (cmd->type == C_EXPLAIN) {
        print_explain(o);
    } else if (cmd->type == C_KILL) {
        long long id = 0;
        (void)jnum(o, "id", &id);
        printf("killed %s %lld\n", jstr(o, "what"), id);
    } else if (cmd->type == C_RELOAD) {
        reload_failed = !jtrue(o, "ok");
        printf("%s\n", jstr(o, "message"));
    } else if (cmd->type == C_METRICS) {
        fputs(jstr(o, "text"), stdout);
    } else if (cmd->tables == 0) {
        /* stats, version: one object */
        print_stats(o);
    } else {
        int t = object_table(o);
        if (t >= 0 && (cmd->tables & (1u << t))) {
            if (json)
                printf("%.*s\n", (int)len, line);
            else
                add_row(t, o);
        }
    }
    json_decref(o);
    return false;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [-s PATH] [-j] [FILTER...] sessions|connections|permissions|ports|plugins|all\n"
            "       %s [-s PATH] [-j] redirects|stats|loops|version|events|metrics|reload\n"
            "       %s [-s PATH] [-j] kill session|connection ID [loop=N]\n"
            "       %s [-s PATH] [-j] [-u USER] explain SRC DST tcp/PORT|udp/PORT\n"
            "  -s, --socket PATH    the gateway's control socket (default $FWX_CTL_SOCKET or %s)\n"
            "  -j, --json           print the server's JSON lines instead of tables or text\n"
            "  -c, --client IP      FILTER: objects of this client\n"
            "  -i, --session ID     FILTER: this session and what belongs to it\n"
            "  -p, --plugin NAME    FILTER: this plugin, and the permissions it asked for\n"
            "  -m, --mode MODE      FILTER: connections and permissions in user or kernel mode\n"
            "  -a, --address IP[:PORT]  FILTER: a client, peer or local address\n"
            "  -u, --user USER      explain: the session's user\n"
            "  -V, --version        print fwxctl's version and exit\n"
            "  -h, --help           print this and exit\n",
            progname, progname, progname, progname, DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
        {"version", no_argument, NULL, 'V'},       {"help", no_argument, NULL, 'h'},
        {"client", required_argument, NULL, 'c'},  {"session", required_argument, NULL, 'i'},
        {"plugin", required_argument, NULL, 'p'},  {"mode", required_argument, NULL, 'm'},
        {"address", required_argument, NULL, 'a'}, {"user", required_argument, NULL, 'u'},
        {NULL, 0, NULL, 0},
    };
    /* Filters go to the server as key=value words (examples/common/ctl.h). */
    char filters[512] = "";
    size_t flen = 0;
    const char *user = NULL;
    const char *path = getenv("FWX_CTL_SOCKET");
    bool json = false;
    const command *cmd = NULL;
    if (path == NULL || path[0] == '\0')
        path = DEFAULT_SOCKET;
    int c;
    /* Options may come before or after the command, as they always could. */
    while ((c = getopt_long(argc, argv, "s:jVhc:i:p:m:a:u:", opts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': key = "client"; break;
        case 'i': key = "session"; break;
        case 'p': key = "plugin"; break;
        case 'm': key = "mode"; break;
        case 'a': key = "address"; break;
        default: break;
        }
        if (key != NULL) {
            /* One word each: a space or a newline would change the request. */
            if (optarg[0] == '\0' || strpbrk(optarg, " \t\r\n=") != NULL) {
                fprintf(stderr, "%s: --%s needs one word\n", progname, key);
                return 2;
            }
            int n = snprintf(filters + flen, sizeof filters - flen, " %s=%s", key, optarg);
            if (n < 0 || (size_t)n >= sizeof filters - flen) {
                fprintf(stderr, "%s: filters too long\n", progname);
                return 2;
            }
            flen += (size_t)n;
            continue;
        }
        switch (c) {
        case 'u':
            if (optarg[0] == '\0' || strpbrk(optarg, " \t\r\n") != NULL) {
                fprintf(stderr, "%s: --user needs one word\n", progname);
                return 2;
            }
            user = optarg;
            break;
        case 's':
            if (optarg[0] == '\0') {
                fprintf(stderr, "%s: --socket needs a path\n", progname);
                usage(stderr);
                return 2;
            }
            path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'V':
            printf("%s %s\n", progname, FWXCTL_VERSION);
            return fflush(stdout) == 0 ? 0 : 1;
        case 'h':
            usage(stdout);
            return 0;
        default: /* getopt_long has said what is wrong */
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(argv[optind], commands[k].name) == 0)
            cmd = &commands[k];
    if (cmd == NULL) {
        fprintf(stderr, "%s: unknown command \"%s\"\n", progname, argv[optind]);
        usage(stderr);
        return 2;
    }
    /* kill takes `loop=N` after its two words when ids of several loops collide. */
    int extra = cmd->type == C_KILL && argc - optind - 1 == 3 && strncmp(argv[argc - 1], "loop=", 5) == 0;
    if (argc - optind - 1 - extra != cmd->args) {
        fprintf(stderr, "%s: %s takes %d argument%s\n", progname, cmd->name, cmd->args, cmd->args == 1 ? "" : "s");
        usage(stderr);
        return 2;
    }
    if (flen > 0 && (cmd->type != C_LIST || strncmp(cmd->request, "list ", 5) != 0)) {
        fprintf(stderr, "%s: filters apply to sessions, connections, permissions, ports, plugins and all\n", progname);
        return 2;
    }
    if (user != NULL && cmd->type != C_EXPLAIN) {
        fprintf(stderr, "%s: --user applies to explain\n", progname);
        return 2;
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "%s%s", cmd->request, filters);
    for (int k = optind + 1; k < argc; k++) {
        if (argv[k][0] == '\0' || strpbrk(argv[k], " \t\r\n") != NULL) {
            fprintf(stderr, "%s: \"%s\": an argument is one word\n", progname, argv[k]);
            return 2;
        }
        n += snprintf(req + n, sizeof req - (size_t)n, " %s", argv[k]);
    }
    if (user != NULL)
        n += snprintf(req + n, sizeof req - (size_t)n, " user=%s", user);
    if (n < 0 || (size_t)n + 2 > sizeof req || (size_t)n > 256) {
        fprintf(stderr, "%s: request too long\n", progname);
        return 2;
    }
    req[n++] = '\n';
    req[n] = '\0';

    int fd = connect_to(path);
    send_all(fd, path, req, (size_t)n);

    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    bool done = false;
    while (!done) {
        if (cap - len < 1024) {
            if (cap >= MAX_LINE)
                die(1, "%s: answer line longer than %d bytes", path, MAX_LINE);
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                die(1, "out of memory");
            buf = nb;
        }
        size_t r = read_some(fd, path, buf + len, cap - len - 1, cmd->type == C_EVENTS ? -1 : ANSWER_TIMEOUT_MS);
        if (r == 0 && cmd->type == C_EVENTS)
            die(1, "%s: the gateway closed the event stream", path);
        if (r == 0)
            die(1, "%s: the server closed the connection before the end of the answer", path);
        len += r;
        size_t start = 0;
        char *nl;
        while (!done && (nl = memchr(buf + start, '\n', len - start)) != NULL) {
            size_t l = (size_t)(nl - (buf + start));
            if (memchr(buf + start, '\0', l) != NULL)
                die(1, "%s: bad answer: NUL byte", path);
            buf[start + l] = '\0';
            done = handle_line(cmd, json, path, buf + start, l);
            start += l + 1;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
    }
    free(buf);
    close(fd);

    if (!json && cmd->type == C_LIST) {
        bool first = true;
        for (int t = 0; t < T_COUNT; t++) {
            if (!(cmd->tables & (1u << t)))
                continue;
            if (cmd->tables != (1u << t)) {
                printf("%s%s: %zu\n", first ? "" : "\n", tables[t].title, tables[t].rows);
                first = false;
            }
            table_print(&tables[t]);
            table_free(&tables[t]);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        die(1, "stdout: %s", strerror(errno));
    return reload_failed ? 1 : 0;
}
