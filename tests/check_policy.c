/*
 * fwx tests - the policy engine: loading (valid and invalid configurations) and decisions.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"
#include "policy/policy_impl.h"
#include "core/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static const fwx_guid G_FTP = FWX_GUID_INIT(0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
static const fwx_guid G_FTP_FILTER = FWX_GUID_INIT(0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
static const fwx_guid G_UNKNOWN = FWX_GUID_INIT(0xde, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

/* The configuration of doc/policy.md, with a few more objects to exercise every rule. */
static const char *const BASE =
    "# fwx policy used by most tests\n"
    "networks = {\n"
    "  internal  = { ranges = [ \"10.0.0.0/8\", \"fd00::/8\" ]; };\n"
    "  dmz       = { ranges = [ \"192.168.5.0-192.168.5.255\" ]; };\n"
    "  lab       = { ranges = [ \"10.1.0.0/16\" ]; };    # inside internal: the more specific wins\n"
    "  perimeter = { ranges = [ \"172.16.0.0/12\" ]; };  # related to nothing\n"
    "  staff     = { ranges = [ \"10.2.0.0/16\" ]; };\n"
    "};\n"
    "relationships = (\n"
    "  { from = \"internal\"; to = \"external\"; type = \"nat\"; },\n"
    "  { from = \"internal\"; to = \"dmz\"; type = \"route\"; },\n"
    "  { from = \"lab\"; to = \"external\"; type = \"nat\"; },\n"
    "  { from = \"staff\"; to = \"external\"; type = \"nat\"; },\n"
    "  { from = \"external\"; to = \"dmz\"; type = \"route\"; },\n"
    ");\n"
    "protocols = (\n"
    "  { name = \"ftp\"; guid = \"{00000001-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; port = 21;\n"
    "    direction = \"outbound\"; filters = [ \"{aaaaaaaa-0000-0000-0000-000000000001}\" ]; },\n"
    "  { name = \"http\"; guid = \"{00000001-0000-0000-0000-000000000002}\"; protocol = \"tcp\"; port = 80; },\n"
    "  { name = \"https\"; guid = \"00000001-0000-0000-0000-000000000003\"; protocol = \"tcp\"; port = 443; },\n"
    "  { name = \"dns\"; guid = \"{00000001-0000-0000-0000-000000000004}\"; protocol = \"udp\"; ports = \"53\";\n"
    "    direction = \"outbound\"; },\n"
    "  { name = \"high\"; guid = \"{00000001-0000-0000-0000-000000000005}\"; protocol = \"tcp\"; ports = \"1024-65535\"; },\n"
    "  { name = \"alt-http\"; guid = \"{00000001-0000-0000-0000-000000000006}\"; protocol = \"tcp\"; ports = \"8080-8081\"; },\n"
    "  { name = \"ftp server\"; guid = \"{00000001-0000-0000-0000-000000000007}\"; protocol = \"tcp\"; port = 21;\n"
    "    direction = \"inbound\"; }, { name = \"https in\"; guid = \"{00000001-0000-0000-0000-000000000009}\";"
    " protocol = \"tcp\"; port = 443; direction = \"inbound\"; filters = [ \"web-filter\" ]; },\n"
    "  { name = \"smtp\"; guid = \"{00000001-0000-0000-0000-000000000008}\"; protocol = \"tcp\"; port = 25; },\n"
    ");\n"
    "address_sets = { partners = [ \"198.51.100.0/24\", \"2001:db8:1::/48\" ]; };\n"
    "domain_sets = { blocked = [ \"example.com\", \"*.bad.example\" ]; };\n"
    "rules = (\n"
    "  { name = \"no blocked sites\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"blocked\" ];\n"
    "    protocols = [ \"all\" ]; },\n"
    "  { name = \"ftp out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"ftp\" ]; },\n"
    "  { name = \"staff web\"; action = \"allow\"; from = [ \"staff\" ]; to = [ \"external\" ];\n"
    "    protocols = [ \"http\" ]; users = [ \"alice\" ]; },\n"
    "  { name = \"no partner smtp\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"partners\" ];\n"
    "    protocols = [ \"smtp\" ]; },\n"
    "  { name = \"smtp out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"smtp\" ]; },\n"
    "  { name = \"no dns to dmz\"; action = \"deny\"; from = [ \"internal\" ]; to = [ \"dmz\" ]; protocols = [ \"dns\" ]; },\n"
    "  { name = \"internal to dmz\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"dmz\" ];\n"
    "    protocols = [ \"all\" ]; },\n"
    "  { name = \"partners https\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"partners\" ];\n"
    "    protocols = [ \"https\" ]; },\n"
    "  { name = \"lab all\"; action = \"allow\"; from = [ \"lab\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; },\n"
    "  { name = \"publish ftp\"; action = \"allow\"; from = [ \"external\" ]; to = [ \"dmz\" ];\n"
    "    protocols = [ \"ftp server\" ]; },\n"
    "  { name = \"alt web\"; action = \"allow\"; from = [ \"staff\", \"partners\" ]; to = [ \"external\" ];\n"
    "    protocols = [ \"alt-http\", \"http\" ]; users = [ \"alice\", \"bob\" ]; },\n"
    ");\n"
    "publishing = (\n"
    "  { name = \"ftp server\"; listen = \"203.0.113.1:21\"; server = \"10.0.0.5:21\"; protocol = \"ftp server\";\n"
    "    full_proxy = false; },\n"
    "  { name = \"web v6\"; listen = \"[2001:db8::1]:443\"; server = \"[fd00::80]:8443\"; protocol = \"https in\";\n"
    "    full_proxy = true; }\n"
    ");\n";

/* 1-based line of the first occurrence of needle. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    ck_assert_msg(at != NULL, "no %s in the config", needle);
    int line = 1;
    for (const char *c = text; c < at; c++)
        line += *c == '\n';
    return line;
}

static fwx_policy *load_ok(const char *text)
{
    fwx_policy *p = NULL;
    fwx_config_error err;
    fwx_result r = fwx_policy_load_string(text, "test.conf", &p, &err);
    ck_assert_msg(r == FWX_S_OK, "load failed: %s:%d: %s: %s", err.file, err.line, err.key, err.message);
    ck_assert_ptr_nonnull(p);
    return p;
}

typedef struct req_opts {
    int32_t proto;
    fwx__direction dir;
    const char *host;
    const char *user;
    const fwx_guid *guid;
    bool published;
} req_opts;

static fwx__policy_decision decide_x(const fwx_policy *p, const char *src, const char *dst, req_opts o)
{
    struct sockaddr_storage s = tu_addr(src), d = tu_addr(dst);
    fwx__policy_request req = { o.proto ? o.proto : FWX_PROTOCOL_TCP, o.dir ? o.dir : FWX__DIR_OUTBOUND, TU_SA(s),
                                TU_SA(d), o.host, o.user, o.guid, o.published };
    fwx__policy_decision out;
    fwx__policy_decide(p, &req, &out);
    return out;
}

/* TCP outbound, no host, no user. */
static fwx__policy_decision decide(const fwx_policy *p, const char *src, const char *dst)
{
    return decide_x(p, src, dst, (req_opts){ 0 });
}

/* decide(), asserting the decision's result is want (the flow and both names printed if not). */
static fwx__policy_decision decided(const fwx_policy *p, const char *src, const char *dst, fwx_result want)
{
    fwx__policy_decision d = decide(p, src, dst);
    ck_assert_msg(d.result == want, "%s -> %s: %s, expected %s", src, dst, fwx_err_name(d.result),
                  fwx_err_name(want));
    return d;
}

/* Asserts the networks a decision found for the source and the destination. */
#define EXPECT_NETS(d, src_net, dst_net)                                                          \
    do {                                                                                          \
        ck_assert_str_eq(fwx__network_name((d).source_network), (src_net));                       \
        ck_assert_str_eq(fwx__network_name((d).destination_network), (dst_net));                  \
    } while (0)

#define EXPECT_RULE(d, want_name)                                                                 \
    do {                                                                                          \
        const char *got_ = (d).rule_name;                                                         \
        const char *want_ = (want_name);                                                          \
        if (want_ == NULL)                                                                        \
            ck_assert_msg(got_ == NULL, "rule %s, expected the default", got_);                   \
        else                                                                                      \
            ck_assert_msg(got_ != NULL && strcmp(got_, want_) == 0, "rule %s, expected %s",       \
                          got_ ? got_ : "(default)", want_);                                      \
    } while (0)

/* One decision to check: the request, the result wanted, the deciding rule (NULL: the default,
   no rule; "*": not checked) and the protocol it was decided as (NULL: not checked; "-": none). */
typedef struct dcase {
    const char *src, *dst;
    req_opts opts;
    fwx_result want;
    const char *rule;
    const char *proto;
} dcase;

static void expect_decisions(const fwx_policy *p, const dcase *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fwx__policy_decision d = decide_x(p, c[i].src, c[i].dst, c[i].opts);
        ck_assert_msg(d.result == c[i].want, "case %zu (%s -> %s): %s, want %s", i, c[i].src, c[i].dst,
                      fwx_err_name(d.result), fwx_err_name(c[i].want));
        const char *rule = d.rule_name != NULL ? d.rule_name : "(default)";
        if (c[i].rule == NULL)
            ck_assert_msg(d.rule_name == NULL, "case %zu: rule %s, want the default", i, rule);
        else if (strcmp(c[i].rule, "*") != 0)
            ck_assert_msg(d.rule_name != NULL && strcmp(d.rule_name, c[i].rule) == 0, "case %zu: rule %s, want %s", i,
                          rule, c[i].rule);
        if (c[i].proto != NULL && strcmp(c[i].proto, "-") == 0)
            ck_assert_msg(d.protocol == NULL, "case %zu: protocol %s, want none", i, d.protocol->name);
        else if (c[i].proto != NULL)
            ck_assert_msg(d.protocol != NULL && strcmp(d.protocol->name, c[i].proto) == 0, "case %zu: protocol %s, want %s",
                          i, d.protocol ? d.protocol->name : "(none)", c[i].proto);
    }
}

#define EXPECT_DECISIONS(p, cases) expect_decisions((p), (cases), sizeof(cases) / sizeof((cases)[0]))

static const char *net_name(const fwx_policy *p, const char *addr)
{
    struct sockaddr_storage a = tu_addr(addr);
    return fwx__network_name(fwx__policy_network_of(p, TU_SA(a)));
}

/* Loads text that must fail, and checks where and why. */
static void expect_error(const char *text, int line, const char *key, const char *msg_part)
{
    fwx_policy *p = (fwx_policy *)&p; /* must be reset to NULL */
    fwx_config_error err;
    fwx_result r = fwx_policy_load_string(text, "bad.conf", &p, &err);
    ck_assert_msg(r == FWX_E_CONFIG, "got %s (%s), expected FWX_E_CONFIG", fwx_err_name(r), err.message);
    ck_assert_ptr_null(p);
    ck_assert_str_eq(err.file, "bad.conf");
    ck_assert_msg(err.line == line, "line %d, expected %d (%s)", err.line, line, err.message);
    ck_assert_str_eq(err.key, key);
    ck_assert_msg(strstr(err.message, msg_part) != NULL, "message \"%s\" lacks \"%s\"", err.message, msg_part);
    ck_assert_msg(!isupper((unsigned char)err.message[0]), "message not lower case: %s", err.message);
}

/* ---- loading ------------------------------------------------------------------------------ */

START_TEST(test_full_config)
{
    fwx_policy *p = load_ok(BASE);

    const fwx__protocol *ftp = fwx__policy_protocol_by_guid(p, &G_FTP);
    ck_assert_ptr_nonnull(ftp);
    ck_assert_str_eq(ftp->name, "ftp");
    ck_assert_int_eq(ftp->ip_protocol, FWX_PROTOCOL_TCP);
    ck_assert_int_eq(ftp->port_lo, 21);
    ck_assert_int_eq(ftp->port_hi, 21);
    ck_assert_int_eq(ftp->direction, FWX__DIR_OUTBOUND);
    ck_assert_int_eq(ftp->line, line_of(BASE, "name = \"ftp\""));
    ck_assert(fwx__protocol_has_filter(ftp, &G_FTP_FILTER, NULL));
    ck_assert(fwx__protocol_has_filter(ftp, &G_FTP_FILTER, "whatever")); /* bound by guid: the name does not matter */
    ck_assert(!fwx__protocol_has_filter(ftp, &G_FTP, NULL));
    ck_assert_ptr_null(fwx__policy_protocol_by_guid(p, &G_UNKNOWN));

    /* Ports: exact, inbound, ranges, the narrower of two overlapping definitions. */
    ck_assert_ptr_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 21, FWX__DIR_OUTBOUND), ftp);
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 21, FWX__DIR_INBOUND)->name, "ftp server");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 8080, FWX__DIR_OUTBOUND)->name, "alt-http");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 8081, FWX__DIR_OUTBOUND)->name, "alt-http");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 8079, FWX__DIR_OUTBOUND)->name, "high");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 8082, FWX__DIR_OUTBOUND)->name, "high");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 65535, FWX__DIR_OUTBOUND)->name, "high");
    ck_assert_str_eq(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_UDP, 53, FWX__DIR_OUTBOUND)->name, "dns");
    ck_assert_ptr_null(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_UDP, 54, FWX__DIR_OUTBOUND));
    ck_assert_ptr_null(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 1023, FWX__DIR_OUTBOUND));
    ck_assert_ptr_null(fwx__policy_protocol_by_port(p, FWX_PROTOCOL_UDP, 53, FWX__DIR_INBOUND));
    ck_assert_ptr_null(fwx__policy_protocol_by_port(p, 1, 53, FWX__DIR_OUTBOUND));

    ck_assert_str_eq(net_name(p, "10.0.0.1"), "internal");
    ck_assert_str_eq(net_name(p, "192.168.5.0"), "dmz");
    ck_assert_str_eq(net_name(p, "192.168.5.255"), "dmz");
    ck_assert_str_eq(net_name(p, "192.168.6.0"), "external");
    ck_assert_str_eq(net_name(p, "8.8.8.8"), "external");
    ck_assert_str_eq(net_name(p, "127.0.0.1"), "localhost");
    ck_assert_str_eq(net_name(p, "127.255.255.254"), "localhost");
    ck_assert_str_eq(net_name(p, "::1"), "localhost");
    ck_assert_str_eq(net_name(p, "fd12::1"), "internal");
    ck_assert_str_eq(net_name(p, "2001:db8::1"), "external");
    ck_assert_str_eq(net_name(p, "::ffff:10.0.0.1"), "internal");

    ck_assert_uint_eq(fwx__policy_publish_count(p), 2);
    const fwx__publish_rule *pub = fwx__policy_publish_at(p, 0);
    ck_assert_str_eq(pub->name, "ftp server");
    ck_assert_str_eq(pub->protocol->name, "ftp server");
    ck_assert(!pub->full_proxy);
    ck_assert_int_eq(pub->line, line_of(BASE, "listen = \"203.0.113.1:21\""));
    struct sockaddr_storage want = tu_addr("203.0.113.1:21");
    ck_assert(fwx__sa_same_endpoint((const struct sockaddr *)&pub->listen, TU_SA(want)));
    want = tu_addr("10.0.0.5:21");
    ck_assert(fwx__sa_same_endpoint((const struct sockaddr *)&pub->server, TU_SA(want)));
    pub = fwx__policy_publish_at(p, 1);
    ck_assert(pub->full_proxy);
    ck_assert_str_eq(pub->protocol->name, "https in");
    /* Bound by its plugin's name. */
    ck_assert_uint_eq(pub->protocol->n_filters, 1);
    ck_assert_str_eq(pub->protocol->filters[0].name, "web-filter");
    ck_assert_int_eq(pub->protocol->filters[0].line, line_of(BASE, "\"web-filter\""));
    ck_assert(fwx__protocol_has_filter(pub->protocol, &G_UNKNOWN, "web-filter"));
    ck_assert(!fwx__protocol_has_filter(pub->protocol, &G_UNKNOWN, "web"));
    ck_assert(!fwx__protocol_has_filter(pub->protocol, &G_UNKNOWN, NULL));
    want = tu_addr("[fd00::80]:8443");
    ck_assert(fwx__sa_same_endpoint((const struct sockaddr *)&pub->server, TU_SA(want)));
    ck_assert_ptr_null(fwx__policy_publish_at(p, 2));

    fwx_policy_free(p);
    fwx_policy_free(NULL);
}
END_TEST

START_TEST(test_minimal_config)
{
    /* An empty policy: everything is external, nothing is allowed. */
    fwx_policy *p = load_ok("");
    ck_assert_str_eq(net_name(p, "10.0.0.1"), "external");
    ck_assert_str_eq(net_name(p, "127.0.0.1"), "localhost");
    fwx__policy_decision d = decided(p, "10.0.0.1:1025", "192.0.2.1:80", FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE); /* same network */
    ck_assert_uint_eq(fwx__policy_publish_count(p), 0);
    fwx_policy_free(p);

    /* Empty sections and trailing commas are fine. */
    p = load_ok("networks = { };\nrelationships = ( );\nprotocols = [ ];\nrules = ();\n"
                "address_sets = { a = [ \"192.0.2.1\", ]; };\n");
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_load_file)
{
    char path[] = "/tmp/fwx_policy_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fputs(BASE, f);
    fclose(f);

    fwx_policy *p = NULL;
    fwx_config_error err;
    TU_EXPECT_HR(fwx_policy_load_file(path, &p, &err), FWX_S_OK);
    ck_assert_ptr_nonnull(p);
    fwx__policy_decision d = decided(p, "10.0.0.8:1025", "192.0.2.1:21", FWX_S_OK);
    EXPECT_RULE(d, "ftp out");
    fwx_policy_free(p);

    /* Errors from a file name the file. */
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("networks = {\n  dmz = { ranges = [ \"192.168.5.0/33\" ]; };\n};\n", f);
    fclose(f);
    p = (fwx_policy *)&p;
    TU_EXPECT_HR(fwx_policy_load_file(path, &p, &err), FWX_E_CONFIG);
    ck_assert_ptr_null(p);
    ck_assert_str_eq(err.file, path);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(err.key, "networks.dmz.ranges.[0]");
    unlink(path);

    TU_EXPECT_HR(fwx_policy_load_file(path, &p, &err), FWX_E_CONFIG);
    ck_assert_ptr_null(p);
    ck_assert_str_eq(err.file, path);
    ck_assert_int_eq(err.line, 0);
    ck_assert_msg(strstr(err.message, "cannot open") != NULL, "%s", err.message);

    /* err may be NULL. */
    TU_EXPECT_HR(fwx_policy_load_file(path, &p, NULL), FWX_E_CONFIG);
    TU_EXPECT_HR(fwx_policy_load_string("rules = 1;", NULL, &p, NULL), FWX_E_CONFIG);
    ck_assert_ptr_null(p);
}
END_TEST

START_TEST(test_load_string_name)
{
    fwx_config_error err;
    fwx_policy *p = NULL;
    TU_EXPECT_HR(fwx_policy_load_string("a = 1;\n", NULL, &p, &err), FWX_E_CONFIG);
    ck_assert_str_eq(err.file, "(string)");
    ck_assert_int_eq(err.line, 1);
    ck_assert_str_eq(err.key, "a");
    TU_EXPECT_HR(fwx_policy_load_string(NULL, "x", &p, &err), FWX_E_CONFIG);
}
END_TEST

/* ---- configuration errors ------------------------------------------------------------------- */

START_TEST(test_error_syntax)
{
    expect_error("rules = (\n  { name = \"x\";\n    action = ; }\n);\n", 3, "", "syntax error");
    /* libconfig refuses two settings of one name itself. */
    expect_error("address_sets = {\n  a = [ \"192.0.2.1\" ];\n  a = [ \"192.0.2.2\" ];\n};\n", 3, "",
                 "duplicate setting");
    expect_error("# one file only\n@include \"other.conf\"\n", 2, "", "@include");
}
END_TEST

/* idle_timeout and handshake_timeout: whole seconds 0-604800, nothing else, at their line. */
START_TEST(test_error_timeouts)
{
    static const char *const bad[] = { "\"60\"", "-1", "2.5", "604801", "true", "[ 1 ]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int k = 0; k < 2; k++) {
            const char *key = k == 0 ? "idle_timeout" : "handshake_timeout";
            char text[512], want_key[64], want_msg[96];
            snprintf(text, sizeof text,
                     "protocols = (\n  { name = \"ftp\"; guid = \"{3a5c1f0e-8b7d-4c2a-9e61-0f4b2d7c8a10}\";\n"
                     "    protocol = \"tcp\"; port = 21;\n    %s = %s; }\n);\n",
                     key, bad[i]);
            snprintf(want_key, sizeof want_key, "protocols.[0].%s", key);
            snprintf(want_msg, sizeof want_msg, "protocol \"ftp\": %s must be a whole number of seconds", key);
            expect_error(text, 4, want_key, want_msg);
        }
    }
    fwx_policy *p = load_ok("protocols = (\n  { name = \"ftp\"; guid = \"{3a5c1f0e-8b7d-4c2a-9e61-0f4b2d7c8a10}\";\n"
                            "    protocol = \"tcp\"; port = 21; idle_timeout = 0; handshake_timeout = 604800; }\n);\n");
    const fwx__protocol *pr = fwx__policy_protocol_at(p, 0);
    ck_assert_int_eq(pr->idle_s, 0);
    ck_assert_int_eq(pr->handshake_s, 604800);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_error_unknown_key)
{
    expect_error("netwroks = { };\n", 1, "netwroks", "unknown key \"netwroks\"");
    expect_error("networks = {\n  dmz = { range = [ \"192.168.5.0/24\" ]; };\n};\n", 2, "networks.dmz.range",
                 "network \"dmz\": unknown key \"range\"");
    expect_error("rules = (\n"
                 "  { name = \"a\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
                 "    protocols = [ \"all\" ]; },\n"
                 "  { name = \"b\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
                 "    protocols = [ \"all\" ];\n"
                 "    user = [ \"alice\" ]; }\n"
                 ");\n",
                 6, "rules.[1].user", "rule \"b\": unknown key \"user\"");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1; filter = [ \"x\" ]; }\n);\n",
                 3, "protocols.[0].filter", "unknown key");
    expect_error("relationships = (\n  { from = \"internal\"; to = \"external\"; type = \"nat\"; kind = 1; }\n);\n",
                 2, "relationships.[0].kind", "unknown key");
    expect_error("publishing = (\n  { name = \"p\"; listen = \"192.0.2.1:80\"; server = \"10.0.0.1:80\";\n"
                 "    protocol = \"x\"; fullproxy = true; }\n);\n",
                 3, "publishing.[0].fullproxy", "unknown key");
}
END_TEST

START_TEST(test_error_bad_range)
{
    expect_error("networks = {\n  internal = { ranges = [ \"10.0.0.0/8\",\n    \"10.0.0.0/33\" ]; };\n};\n", 3,
                 "networks.internal.ranges.[1]", "network \"internal\": bad range \"10.0.0.0/33\"");
    expect_error("networks = { dmz = { ranges = [ \"10.0.0.1/8\" ]; }; };\n", 1, "networks.dmz.ranges.[0]",
                 "bits set after the prefix");
    expect_error("networks = { dmz = { ranges = [ \"10.0.0.9-10.0.0.1\" ]; }; };\n", 1, "networks.dmz.ranges.[0]",
                 "above the last");
    expect_error("networks = { dmz = { ranges = [ \"10.0.0.1-fd00::1\" ]; }; };\n", 1, "networks.dmz.ranges.[0]",
                 "different address families");
    expect_error("networks = { dmz = { ranges = [ \"010.0.0.1\" ]; }; };\n", 1, "networks.dmz.ranges.[0]",
                 "bad range");
    expect_error("networks = { dmz = { ranges = [ \"fd00::/129\" ]; }; };\n", 1, "networks.dmz.ranges.[0]",
                 "prefix length");
    expect_error("address_sets = {\n  s = [ \"192.0.2.0/24\", \"host.example\" ];\n};\n", 2, "address_sets.s.[1]",
                 "address set \"s\": bad range \"host.example\"");
    expect_error("networks = { dmz = { }; };\n", 1, "networks.dmz.ranges", "missing ranges");
    expect_error("networks = { dmz = { ranges = [ ]; }; };\n", 1, "networks.dmz.ranges", "ranges is empty");
    expect_error("networks = { dmz = { ranges = [ 1 ]; }; };\n", 1, "networks.dmz.ranges.[0]", "list of strings");
    expect_error("domain_sets = { d = [ \"a..example\" ]; };\n", 1, "domain_sets.d.[0]", "bad domain name");
    expect_error("domain_sets = { d = [ \"*\" ]; };\n", 1, "domain_sets.d.[0]", "bad domain name");
}
END_TEST

START_TEST(test_error_unknown_reference)
{
    expect_error("rules = (\n"
                 "  { name = \"r\"; action = \"allow\";\n"
                 "    from = [ \"intrnal\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n"
                 ");\n",
                 3, "rules.[0].from.[0]", "rule \"r\": unknown network or address set \"intrnal\"");
    expect_error("rules = (\n"
                 "  { name = \"r\"; action = \"allow\"; from = [ \"internal\" ];\n"
                 "    to = [ \"external\",\n"
                 "           \"nowhere\" ]; protocols = [ \"all\" ]; }\n"
                 ");\n",
                 4, "rules.[0].to.[1]", "unknown network, address set or domain set \"nowhere\"");
    expect_error("rules = (\n"
                 "  { name = \"r\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
                 "    protocols = [ \"gopher\" ]; }\n"
                 ");\n",
                 3, "rules.[0].protocols.[0]", "unknown protocol \"gopher\"");
    expect_error("domain_sets = { d = [ \"example.com\" ]; };\n"
                 "rules = (\n"
                 "  { name = \"r\"; action = \"allow\"; from = [ \"d\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n"
                 ");\n",
                 3, "rules.[0].from.[0]", "domain set \"d\" cannot be a source");
    expect_error("relationships = (\n  { from = \"internal\";\n    to = \"mars\"; type = \"nat\"; }\n);\n", 3,
                 "relationships.[0].to", "unknown network \"mars\"");
    expect_error("address_sets = { s = [ \"192.0.2.1\" ]; };\n"
                 "relationships = ( { from = \"internal\"; to = \"s\"; type = \"nat\"; } );\n",
                 2, "relationships.[0].to", "unknown network \"s\"");
    expect_error("publishing = (\n  { name = \"p\"; listen = \"192.0.2.1:80\"; server = \"10.0.0.1:80\";\n"
                 "    protocol = \"http\"; }\n);\n",
                 3, "publishing.[0].protocol", "unknown protocol \"http\"");
    expect_error("rules = (\n  { name = \"r\"; action = \"allow\"; from = [ \"internal\" ]; protocols = [ \"all\" ]; }\n);\n",
                 2, "rules.[0].to", "rule \"r\": missing to");
}
END_TEST

START_TEST(test_error_duplicate_name)
{
    expect_error("protocols = (\n"
                 "  { name = \"http\"; guid = \"{00000001-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; port = 80; },\n"
                 "  { name = \"http\"; guid = \"{00000001-0000-0000-0000-000000000002}\"; protocol = \"tcp\"; port = 8080; }\n"
                 ");\n",
                 3, "protocols.[1].name", "protocol \"http\": name is already used by a protocol (line 2)");
    expect_error("networks = { dmz = { ranges = [ \"192.168.5.0/24\" ]; }; };\n"
                 "address_sets = {\n  dmz = [ \"192.0.2.1\" ];\n};\n",
                 3, "address_sets.dmz", "address set \"dmz\": name is already used by a network (line 1)");
    expect_error("domain_sets = {\n  external = [ \"example.com\" ];\n};\n", 2, "domain_sets.external",
                 "name is already used by the predefined network");
    const char *rule = "  { name = \"same\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ]; "
                       "protocols = [ \"all\" ]; }";
    char text[1024];
    snprintf(text, sizeof text, "rules = (\n%s,\n%s,\n%s\n);\n", rule, rule, rule);
    expect_error(text, 3, "rules.[1].name", "rule \"same\": name is already used by a rule (line 2)");
    expect_error("protocols = (\n"
                 "  { name = \"all\"; guid = \"{00000001-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; port = 80; }\n"
                 ");\n",
                 2, "protocols.[0].name", "reserved");
    expect_error("relationships = (\n  { from = \"internal\"; to = \"external\"; type = \"nat\"; },\n"
                 "  { from = \"internal\"; to = \"external\"; type = \"route\"; }\n);\n",
                 3, "relationships.[1]", "internal to external is already defined at line 2");
}
END_TEST

START_TEST(test_error_bad_port)
{
    const char *fmt = "protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                      "    protocol = \"tcp\"; %s }\n);\n";
    static const struct {
        const char *fragment; /* the protocol's port settings */
        int line;
        const char *key, *msg;
    } cases[] = {
        { "port = 0;", 3, "protocols.[0].port", "protocol \"p\": port 0 is out of range 1-65535" },
        { "port = 65536;", 3, "protocols.[0].port", "out of range" },
        { "port = \"80\";", 3, "protocols.[0].port", "must be a number" },
        { "ports = \"90-80\";", 3, "protocols.[0].ports", "bad port range \"90-80\"" },
        { "ports = \"0-80\";", 3, "protocols.[0].ports", "bad port range" },
        { "ports = \"1-65536\";", 3, "protocols.[0].ports", "bad port range" },
        { "port = 80; ports = \"80\";", 3, "protocols.[0].ports", "not both" },
        { "", 2, "protocols.[0].port", "missing port" },
        { "port = 53; protocol = \"icmp\";", 3, "", "duplicate setting" }, /* libconfig: two "protocol" keys */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, fmt, cases[i].fragment);
        expect_error(text, cases[i].line, cases[i].key, cases[i].msg);
    }
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"icmp\"; port = 1; }\n);\n",
                 3, "protocols.[0].protocol", "bad protocol \"icmp\"");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1; direction = \"both\"; }\n);\n",
                 3, "protocols.[0].direction", "bad direction \"both\"");
    expect_error("protocols = ( { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; "
                 "port = 80; } );\n"
                 "publishing = (\n  { name = \"x\"; listen = \"192.0.2.1\"; server = \"10.0.0.1:80\"; protocol = \"p\"; }\n);\n",
                 3, "publishing.[0].listen", "publishing rule \"x\": bad listen \"192.0.2.1\"");
}
END_TEST

START_TEST(test_error_bad_action)
{
    expect_error("rules = (\n"
                 "  { name = \"r\";\n"
                 "    action = \"permit\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n"
                 ");\n",
                 3, "rules.[0].action", "rule \"r\": bad action \"permit\"");
    expect_error("rules = (\n"
                 "  { name = \"r\"; action = true; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n"
                 ");\n",
                 2, "rules.[0].action", "action must be a string");
    expect_error("rules = (\n  { name = \"r\"; from = [ \"internal\" ]; to = [ \"external\" ]; protocols = [ \"all\" ]; }\n);\n",
                 2, "rules.[0].action", "missing action");
    expect_error("rules = (\n  { name = \"r\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];\n"
                 "    protocols = [ \"all\" ]; users = [ ]; }\n);\n",
                 3, "rules.[0].users", "users is empty");
    expect_error("rules = { };\n", 1, "rules", "must be a list");
    expect_error("networks = ( );\n", 1, "networks", "must be a group");
    expect_error("rules = ( \"r\" );\n", 1, "rules.[0]", "rule [0]: must be a group");
    expect_error("relationships = (\n  { from = \"internal\"; to = \"external\"; type = \"bridge\"; }\n);\n", 2,
                 "relationships.[0].type", "bad type \"bridge\"");
    expect_error("relationships = (\n  { from = \"internal\"; to = \"internal\"; type = \"route\"; }\n);\n", 2,
                 "relationships.[0].to", "always routed to itself");
}
END_TEST

START_TEST(test_error_bad_guid)
{
    expect_error("protocols = (\n  { name = \"p\";\n    guid = \"{00000001-0000-0000-0000-00000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1; }\n);\n",
                 3, "protocols.[0].guid", "protocol \"p\": bad guid");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001\";\n"
                 "    protocol = \"tcp\"; port = 1; }\n);\n",
                 2, "protocols.[0].guid", "bad guid");
    expect_error("protocols = (\n  { name = \"p\"; protocol = \"tcp\"; port = 1; }\n);\n", 2, "protocols.[0].guid",
                 "missing guid");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1;\n    filters = [ \"{00000001-0000-0000-0000-000000000001}\", \"{nope}\" ]; }\n);\n",
                 4, "protocols.[0].filters.[1]", "bad filter \"{nope}\" (want a plugin name such as \"ftp\"");
}
END_TEST

START_TEST(test_error_duplicate_guid)
{
    expect_error("protocols = (\n"
                 "  { name = \"a\"; guid = \"{00000001-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; port = 80; },\n"
                 "  { name = \"b\"; guid = \"{00000001-0000-0000-0000-000000000002}\"; protocol = \"tcp\"; port = 81; },\n"
                 "  { name = \"c\";\n"
                 "    guid = \"00000001-0000-0000-0000-000000000001\"; protocol = \"udp\"; port = 80; }\n"
                 ");\n",
                 5, "protocols.[2].guid", "protocol \"c\": guid is already used by protocol \"a\" (line 2)");
}
END_TEST

START_TEST(test_error_external_ranges)
{
    expect_error("networks = {\n  external = {\n    ranges = [ \"0.0.0.0/0\" ];\n  };\n};\n", 3,
                 "networks.external.ranges", "network \"external\": may not have ranges");
    /* Naming it without ranges is harmless. */
    fwx_policy *p = load_ok("networks = { external = { }; };\n");
    ck_assert_str_eq(net_name(p, "10.0.0.1"), "external");
    fwx_policy_free(p);
}
END_TEST

/* ---- decisions ---------------------------------------------------------------------------- */

START_TEST(test_network_relationship)
{
    fwx_policy *p = load_ok(BASE);
    fwx__policy_decision d = decided(p, "10.0.0.8:1025", "172.16.0.1:21", FWX_E_NETWORK_RULES_DENIED);
    EXPECT_NETS(d, "internal", "perimeter");
    ck_assert_int_eq(d.relationship, FWX__REL_NONE);
    EXPECT_RULE(d, NULL);
    ck_assert_int_eq(d.rule_line, 0);

    /* Directional: internal -> external is NAT, the way back has no relationship. */
    d = decided(p, "192.0.2.7:1025", "10.0.0.8:21", FWX_E_NETWORK_RULES_DENIED);
    d = decided(p, "10.0.0.8:1025", "192.0.2.7:21", FWX_S_OK);
    ck_assert_int_eq(d.relationship, FWX__REL_NAT);
    d = decide(p, "10.0.0.8:1025", "192.168.5.1:21");
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE);

    /* Within one network: route, then the rules (none allow internal -> internal). */
    d = decided(p, "10.0.0.8:1025", "10.0.0.9:21", FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE);

    /* The gateway is related to everyone. */
    d = decide(p, "127.0.0.1:1025", "172.16.0.1:21");
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE);
    TU_EXPECT_HR(d.result, FWX_E_PROTOCOL_RULES_DENIED);
    d = decide(p, "172.16.0.1:1025", "127.0.0.1:21");
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_first_match)
{
    fwx_policy *p = load_ok(BASE);
    /* Both "no blocked sites" and "ftp out" match; the first decides. */
    fwx__policy_decision d = decide_x(p, "10.0.0.8:1025", "192.0.2.7:21", (req_opts){ .host = "example.com" });
    TU_EXPECT_HR(d.result, FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    EXPECT_RULE(d, "no blocked sites");
    ck_assert_int_eq(d.rule_line, line_of(BASE, "\"no blocked sites\""));
    ck_assert_str_eq(d.protocol->name, "ftp");

    d = decided(p, "10.0.0.8:1025", "192.0.2.7:21", FWX_S_OK);
    EXPECT_RULE(d, "ftp out");
    ck_assert_int_eq(d.rule_line, line_of(BASE, "\"ftp out\""));

    /* "no dns to dmz" precedes "internal to dmz", which allows everything else. */
    d = decide_x(p, "10.0.0.8:1025", "192.168.5.1:53", (req_opts){ .proto = FWX_PROTOCOL_UDP });
    TU_EXPECT_HR(d.result, FWX_E_PROTOCOL_RULES_DENIED);
    EXPECT_RULE(d, "no dns to dmz");
    d = decided(p, "10.0.0.8:1025", "192.168.5.1:53", FWX_S_OK);
    EXPECT_RULE(d, "internal to dmz");
    ck_assert_ptr_null(d.protocol); /* tcp/53 is not defined; "all" covers it */
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_deny_codes)
{
    fwx_policy *p = load_ok(BASE);
    static const dcase cases[] = {
        /* A deny rule whose `to` names an address set is a site rule. */
        { "10.0.0.8:1025", "198.51.100.9:25", { 0 }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, "no partner smtp", NULL },
        { "10.0.0.8:1025", "198.51.101.9:25", { 0 }, FWX_S_OK, "smtp out", NULL },
        /* A deny rule naming only networks denies the protocol. */
        { "10.0.0.8:1025", "192.168.5.1:53", { .proto = FWX_PROTOCOL_UDP }, FWX_E_PROTOCOL_RULES_DENIED, "*", NULL },
    };
    EXPECT_DECISIONS(p, cases);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_default_deny)
{
    fwx_policy *p = load_ok(BASE);
    static const dcase cases[] = {
        /* https is allowed to partners only: elsewhere the site is what is refused. */
        { "10.0.0.8:1025", "192.0.2.7:443", { 0 }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, NULL, "https" },
        { "10.0.0.8:1025", "198.51.100.1:443", { 0 }, FWX_S_OK, "partners https", NULL },
        /* No rule names "high", but "internal to dmz" allows every protocol from internal, to
           another destination: the site is refused. */
        { "10.0.0.8:1025", "192.0.2.7:5000", { 0 }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, NULL, NULL },
        /* From external only "ftp server" is allowed: "high" is a refused protocol. */
        { "203.0.113.9:1025", "192.168.5.1:5000", { 0 }, FWX_E_PROTOCOL_RULES_DENIED, NULL, "high" },
        /* ... and for "ftp server" the destination decides. */
        { "203.0.113.9:1025", "192.168.5.1:21", { .dir = FWX__DIR_INBOUND }, FWX_S_OK, "*", NULL },
        /* No protocol definition: only "all" rules could match; "internal to dmz" is one, for
           another destination. */
        { "10.0.0.8:1025", "192.0.2.7:9999", { .proto = FWX_PROTOCOL_UDP }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, "*", "-" },
        /* From perimeter nothing is allowed. */
        { "172.16.0.1:1025", "172.16.0.2:21", { 0 }, FWX_E_PROTOCOL_RULES_DENIED, "*", NULL },
    };
    EXPECT_DECISIONS(p, cases);
    /* The default decision names no rule line. */
    ck_assert_int_eq(decide(p, "10.0.0.8:1025", "192.0.2.7:443").rule_line, 0);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_users)
{
    fwx_policy *p = load_ok(BASE);
    static const dcase cases[] = {
        { "10.2.0.8:1025", "192.0.2.7:80", { .user = "alice" }, FWX_S_OK, "staff web", NULL },
        { "10.2.0.8:1025", "192.0.2.7:80", { .user = "bob" }, FWX_S_OK, "alt web", NULL },
        /* carol is in no rule: none fits her, so the protocol is what is refused. */
        { "10.2.0.8:1025", "192.0.2.7:80", { .user = "carol" }, FWX_E_PROTOCOL_RULES_DENIED, NULL, NULL },
        /* Names are compared exactly. */
        { "10.2.0.8:1025", "192.0.2.7:80", { .user = "Alice" }, FWX_E_PROTOCOL_RULES_DENIED, "*", NULL },
        /* Without a user a rule that lists users does not match. */
        { "10.2.0.8:1025", "192.0.2.7:80", { 0 }, FWX_E_PROTOCOL_RULES_DENIED, "*", NULL },
        /* A user-only rule does not leak to other networks ("internal to dmz" fits). */
        { "10.0.0.8:1025", "192.0.2.7:80", { .user = "alice" }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, NULL, NULL },
        /* Rules without users match with or without one. */
        { "10.0.0.8:1025", "192.0.2.7:21", { .user = "carol" }, FWX_S_OK, "*", NULL },
        /* An address set as a source: a partner address counts, whatever network it is in. */
        { "198.51.100.3:1025", "192.0.2.7:8080", { .user = "bob" }, FWX_S_OK, "alt web", NULL },
    };
    EXPECT_DECISIONS(p, cases);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_domain_sets)
{
    fwx_policy *p = load_ok(BASE);
#define HOST(h, want) { "10.0.0.8:1025", "192.0.2.7:21", { .host = (h) }, (want), "*", NULL }
    static const dcase cases[] = {
        HOST("example.com", FWX_E_SITE_AND_CONTENT_RULES_DENIED),
        HOST("EXAMPLE.com.", FWX_E_SITE_AND_CONTENT_RULES_DENIED),
        HOST("www.example.com", FWX_S_OK), /* exact names do not cover subdomains */
        HOST("a.bad.example", FWX_E_SITE_AND_CONTENT_RULES_DENIED),
        HOST("x.y.Bad.Example", FWX_E_SITE_AND_CONTENT_RULES_DENIED),
        HOST("bad.example", FWX_S_OK), /* "*." covers subdomains only */
        HOST("notbad.example", FWX_S_OK),
        HOST("", FWX_S_OK),
        HOST(".", FWX_S_OK),
        HOST(NULL, FWX_S_OK), /* no host name: a domain set never matches */
    };
#undef HOST
    EXPECT_DECISIONS(p, cases);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_protocol_guid)
{
    fwx_policy *p = load_ok(BASE);
    /* A secondary connection of ftp to a high port is decided as ftp. */
    fwx__policy_decision d = decide_x(p, "10.0.0.8:1025", "192.0.2.7:50000", (req_opts){ .guid = &G_FTP });
    TU_EXPECT_HR(d.result, FWX_S_OK);
    EXPECT_RULE(d, "ftp out");
    ck_assert_ptr_eq(d.protocol, fwx__policy_protocol_by_guid(p, &G_FTP));
    /* By port it is "high", which no rule allows to external. */
    d = decided(p, "10.0.0.8:1025", "192.0.2.7:50000", FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    EXPECT_RULE(d, NULL);
    ck_assert_str_eq(d.protocol->name, "high");
    /* An unknown GUID means no protocol, not a fall back to the port. */
    d = decide_x(p, "10.0.0.8:1025", "192.0.2.7:21", (req_opts){ .guid = &G_UNKNOWN });
    ck_assert_ptr_null(d.protocol);
    TU_EXPECT_HR(d.result, FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    d = decide_x(p, "10.1.0.8:1025", "192.0.2.7:21", (req_opts){ .guid = &G_UNKNOWN });
    TU_EXPECT_HR(d.result, FWX_S_OK);
    EXPECT_RULE(d, "lab all");
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_inbound)
{
    fwx_policy *p = load_ok(BASE);
    fwx__policy_decision d =
        decide_x(p, "203.0.113.9:40000", "192.168.5.10:21", (req_opts){ .dir = FWX__DIR_INBOUND });
    TU_EXPECT_HR(d.result, FWX_S_OK);
    EXPECT_RULE(d, "publish ftp");
    ck_assert_str_eq(d.protocol->name, "ftp server");
    ck_assert_int_eq(d.relationship, FWX__REL_ROUTE);
    /* The same flow as an outbound request is ftp, which nobody external may use. */
    d = decided(p, "203.0.113.9:40000", "192.168.5.10:21", FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_str_eq(d.protocol->name, "ftp");
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_ipv6)
{
    fwx_policy *p = load_ok(BASE);
    fwx__policy_decision d = decided(p, "[fd00::5]:1025", "[2001:db8:1::1]:443", FWX_S_OK);
    EXPECT_RULE(d, "partners https");
    EXPECT_NETS(d, "internal", "external");
    d = decided(p, "[fd00::5]:1025", "[2001:db8:2::1]:443", FWX_E_SITE_AND_CONTENT_RULES_DENIED);
    d = decided(p, "[fd00::5]:1025", "[2001:db8:2::1]:21", FWX_S_OK);
    EXPECT_RULE(d, "ftp out");
    /* A v4-mapped address is its IPv4 host. */
    d = decided(p, "[::ffff:10.0.0.8]:1025", "[::ffff:192.0.2.7]:21", FWX_S_OK);
    ck_assert_str_eq(fwx__network_name(d.source_network), "internal");
    d = decided(p, "[2001:db8:9::1]:1025", "[fd00::1]:21", FWX_E_NETWORK_RULES_DENIED);
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_overlapping_networks)
{
    fwx_policy *p = load_ok(BASE);
    ck_assert_str_eq(net_name(p, "10.0.255.255"), "internal");
    ck_assert_str_eq(net_name(p, "10.1.0.0"), "lab");
    ck_assert_str_eq(net_name(p, "10.1.255.255"), "lab");
    ck_assert_str_eq(net_name(p, "10.2.0.0"), "staff");
    ck_assert_str_eq(net_name(p, "10.3.0.0"), "internal");
    /* lab is its own network: internal's rules and relationships do not apply to it. */
    fwx__policy_decision d = decided(p, "10.1.2.3:1025", "192.0.2.7:5000", FWX_S_OK);
    EXPECT_RULE(d, "lab all");
    ck_assert_str_eq(fwx__network_name(d.source_network), "lab");
    d = decided(p, "10.1.2.3:1025", "192.168.5.1:80", FWX_E_NETWORK_RULES_DENIED);
    fwx_policy_free(p);

    /* Nested three deep, across the boundaries, and localhost extended. */
    p = load_ok("networks = {\n"
                "  a = { ranges = [ \"10.0.0.0/8\" ]; };\n"
                "  b = { ranges = [ \"10.5.0.0-10.5.255.255\", \"fd00::/16\" ]; };\n"
                "  c = { ranges = [ \"10.5.5.5\", \"fd00:1::/32\" ]; };\n"
                "  localhost = { ranges = [ \"192.0.2.1\" ]; };\n"
                "  all4 = { ranges = [ \"0.0.0.0/0\" ]; };\n"
                "  all6 = { ranges = [ \"::/0\" ]; };\n"
                "};\n");
    ck_assert_str_eq(net_name(p, "10.5.5.4"), "b");
    ck_assert_str_eq(net_name(p, "10.5.5.5"), "c");
    ck_assert_str_eq(net_name(p, "10.5.5.6"), "b");
    ck_assert_str_eq(net_name(p, "10.4.255.255"), "a");
    ck_assert_str_eq(net_name(p, "10.6.0.0"), "a");
    ck_assert_str_eq(net_name(p, "9.255.255.255"), "all4");
    ck_assert_str_eq(net_name(p, "255.255.255.255"), "all4");
    ck_assert_str_eq(net_name(p, "192.0.2.1"), "localhost");
    ck_assert_str_eq(net_name(p, "127.0.0.1"), "localhost");
    ck_assert_str_eq(net_name(p, "fd00::1"), "b");
    ck_assert_str_eq(net_name(p, "fd00:1::1"), "c");
    ck_assert_str_eq(net_name(p, "::1"), "localhost");
    ck_assert_str_eq(net_name(p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "all6");
    ck_assert_str_eq(net_name(p, "::"), "all6");
    fwx_policy_free(p);
}
END_TEST

START_TEST(test_trailing_commas)
{
    /* The example in doc/policy.md uses them; libconfig 1.5 alone would not accept them. */
    fwx_policy *p = load_ok("rules = (\n"
                            "  { name = \"x,]\"; action = \"allow\"; from = [ \"external\", ]; to = [ \"external\" , ];\n"
                            "    protocols = [ \"all\", # every protocol\n ], },  /* a comment, */ // another\n"
                            ");\n");
    /* Commas inside strings stay. */
    fwx__policy_decision d = decided(p, "192.0.2.1:1025", "192.0.2.2:80", FWX_S_OK);
    EXPECT_RULE(d, "x,]");
    ck_assert_int_eq(d.rule_line, 2);
    fwx_policy_free(p);
    expect_error("domain_sets = { d = [ \"x.example\", \"a,]\" ]; };\n", 1, "domain_sets.d.[1]",
                 "bad domain name \"a,]\"");
}
END_TEST

/* The example in doc/policy.md loads and decides as its table says. */
/* The fenced block of doc/policy.md that starts at the first "\n```\n" at or after `anchor` (a
   heading, or the block's own first line), as a string in a static buffer. */
static char *policy_doc_block(const char *anchor)
{
    const char *dir = getenv("FWX_TEST_SRC_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/../doc/policy.md", dir != NULL ? dir : "tests");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char doc[64 * 1024];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *start = strstr(doc, anchor);
    ck_assert_msg(start != NULL, "doc/policy.md has no \"%s\"", anchor);
    start = strstr(start, "\n```\n");
    ck_assert_ptr_nonnull(start);
    start += 5;
    char *end = strstr(start, "\n```\n");
    ck_assert_ptr_nonnull(end);
    end[1] = '\0';
    return start;
}

START_TEST(test_doc_example)
{
    fwx_policy *p = load_ok(policy_doc_block("\n## Every section in one file\n"));
    static const dcase cases[] = {
        { "10.0.0.8:1025", "192.0.2.7:21", { 0 }, FWX_S_OK, "ftp out", NULL },
        { "10.0.0.8:1025", "192.0.2.7:21", { .host = "www.bad.example" }, FWX_E_SITE_AND_CONTENT_RULES_DENIED,
          "no blocked sites", NULL },
        { "10.0.0.8:1025", "192.0.2.7:80", { .user = "alice" }, FWX_S_OK, "staff web", NULL },
        { "10.0.0.8:1025", "192.0.2.7:80", { 0 }, FWX_E_PROTOCOL_RULES_DENIED, "*", NULL },
        { "10.0.0.8:1025", "192.0.2.7:443", { 0 }, FWX_E_SITE_AND_CONTENT_RULES_DENIED, "*", NULL },
        { "10.1.2.3:1025", "192.168.5.1:80", { 0 }, FWX_E_NETWORK_RULES_DENIED, "*", NULL },
        { "192.0.2.7:1025", "10.0.0.8:21", { 0 }, FWX_E_NETWORK_RULES_DENIED, "*", NULL },
        { "203.0.113.9:40000", "192.168.5.21:21", { .dir = FWX__DIR_INBOUND }, FWX_S_OK, "ftp in", NULL },
    };
    EXPECT_DECISIONS(p, cases);
    ck_assert_int_eq(decide(p, "10.0.0.8:1025", "192.0.2.7:21").relationship, FWX__REL_NAT);
    ck_assert_uint_eq(fwx__policy_publish_count(p), 1);
    ck_assert_str_eq(fwx__policy_publish_at(p, 0)->protocol->name, "ftp server");
    /* The time limits: "ftp" sets both; "ftp server" none (the host's defaults, -1). */
    const fwx__protocol *ftp = fwx__policy_protocol_by_port(p, FWX_PROTOCOL_TCP, 21, FWX__DIR_OUTBOUND);
    ck_assert_ptr_nonnull(ftp);
    ck_assert_int_eq(ftp->idle_s, 600);
    ck_assert_int_eq(ftp->handshake_s, 30);
    ck_assert_int_eq(fwx__policy_publish_at(p, 0)->protocol->idle_s, -1);
    ck_assert_int_eq(fwx__policy_publish_at(p, 0)->protocol->handshake_s, -1);
    fwx_policy_free(p);
}
END_TEST

/* ---- against a firewall: bound filters, listen addresses, published and refused connections ---- */

typedef struct fwfx {
    uv_loop_t loop;
    fwx_firewall *fw;
    fwx_plugin *plugin; /* tests/plugins' "good" */
    IFWXSession *s;
} fwfx;

/* A firewall logging at warn into the test's capture, with the "good" test plugin loaded, and a
   NAT session for `client`. */
static void fw_open(fwfx *f, const char *client)
{
    memset(f, 0, sizeof *f);
    fwx_firewall_options o;
    fwx_firewall_options_init(&o);
    o.log = tu_log_capture;
    o.log_level = FWX_LOG_WARN; /* what is asserted below is visible at warn */
    tu_fw_open(&f->loop, &o, &f->fw);
    tu_log_reset();
    TU_EXPECT_HR(fwx_firewall_load_plugin(f->fw, tu_plugin_path("tp_good"), &f->plugin), FWX_S_OK);
    f->s = tu_session_open(f->fw, fwxSourceNAT, client, NULL);
}

static void fw_close(fwfx *f)
{
    fwx_session_close(f->s);
    IFWXSession_Release(f->s);
    tu_fw_close(&f->loop, &f->fw);
}

static fwx_result fw_connect(fwfx *f, const char *peer)
{
    struct sockaddr_storage p = tu_addr(peer);
    fwx_connection_params cp = {sizeof cp, fwx_Connect_Tcp, FWX_PROTOCOL_TCP, TU_SA(p), tu_len(&p), NULL, 0, NULL, 0, 0, NULL};
    IFWXConnection *c = NULL;
    fwx_result hr = fwx_connection_open(f->s, &cp, &c);
    if (c != NULL)
        fwx_connection_close(c);
    return hr;
}

#define SVC_BOUND(filter)                                                                                  \
    "protocols = (\n"                                                                                      \
    "  { name = \"svc\"; guid = \"{00000002-0000-0000-0000-000000000001}\"; protocol = \"tcp\"; port = 2100;\n" \
    "    filters = [ " filter " ]; }\n"                                                                    \
    ");\n"                                                                                                 \
    "rules = ( { name = \"svc out\"; action = \"allow\"; from = [ \"external\" ]; to = [ \"external\" ];"  \
    " protocols = [ \"svc\" ]; } );\n"

/* fwx_firewall_check_policy: a filter bound by name or GUID must be provided by a loaded plugin,
   a listen address must be this host's; errors name the line, the key and what to write. */
START_TEST(test_check_against_firewall)
{
    fwfx f;
    fw_open(&f, "10.0.0.8");
    char guid[FWX_GUID_STRLEN], text[2048];
    fwx_guid_format(&fwx_plugin_info(f.plugin)->filter_guid, guid);
    fwx_config_error err;

    fwx_policy *p = load_ok(SVC_BOUND("\"good\""));
    TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, p, &err), FWX_S_OK);
    fwx_policy_free(p);
    snprintf(text, sizeof text, SVC_BOUND("\"%s\""), guid);
    p = load_ok(text);
    TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, p, &err), FWX_S_OK);
    fwx_policy_free(p);

    /* A mistyped name and a GUID no plugin has: the line of the entry, what is loaded. */
    const char *bad[] = { SVC_BOUND("\"goood\""), SVC_BOUND("\"{7e570000-0000-0000-0000-0000000000ff}\"") };
    for (size_t i = 0; i < 2; i++) {
        snprintf(text, sizeof text, "%s", bad[i]);
        p = load_ok(text);
        TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, p, &err), FWX_E_CONFIG);
        ck_assert_str_eq(err.file, "test.conf");
        ck_assert_int_eq(err.line, 3);
        ck_assert_str_eq(err.key, "protocols.[0].filters.[0]");
        ck_assert_msg(strstr(err.message, "no loaded plugin provides filter") != NULL &&
                          strstr(err.message, "(loaded: \"good\")") != NULL,
                      "%s: message %s", bad[i], err.message);
        fwx_policy_free(p);
    }

    /* Publishing on an address this host does not hold (TEST-NET-1), then on one it does. */
    const char *pub = "protocols = ( { name = \"in\"; guid = \"{00000002-0000-0000-0000-000000000002}\";"
                      " protocol = \"tcp\"; port = 2100; direction = \"inbound\"; } );\n"
                      "publishing = (\n  { name = \"svc\"; listen = \"%s:2100\"; server = \"127.0.0.3:2100\";"
                      " protocol = \"in\"; }\n);\n";
    snprintf(text, sizeof text, pub, "192.0.2.99");
    p = load_ok(text);
    TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, p, &err), FWX_E_CONFIG);
    ck_assert_int_eq(err.line, 3);
    ck_assert_str_eq(err.key, "publishing.[0].listen");
    ck_assert_msg(strstr(err.message, "192.0.2.99 is not an address of this host") != NULL, "%s", err.message);
    fwx_policy_free(p);
    snprintf(text, sizeof text, pub, "127.0.0.1");
    p = load_ok(text);
    TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, p, &err), FWX_S_OK);
    fwx_policy_free(p);
    TU_EXPECT_HR(fwx_firewall_check_policy(f.fw, NULL, &err), FWX_E_POINTER);
    fw_close(&f);
}
END_TEST

/* A protocol whose bound filter is not loaded is never relayed unfiltered:
   a policy binding a mistyped GUID warns when set and refuses the connection, and a plugin
   unloaded at run time takes its protocol's connections with it. */
START_TEST(test_missing_filter_refused)
{
    fwfx f;
    fw_open(&f, "10.0.0.8");
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, load_ok(SVC_BOUND("\"good\""))), FWX_S_OK);
    ck_assert_int_eq(tu_log_count("binds filter", NULL), 0);
    TU_EXPECT_HR(fw_connect(&f, "192.0.2.7:2100"), FWX_S_OK);

    TU_EXPECT_HR(fwx_plugin_unload(f.plugin), FWX_S_OK);
    TU_EXPECT_HR(fw_connect(&f, "192.0.2.7:2100"), FWX_E_CLASSNOTREG);
    ck_assert_int_eq(tu_log_count("192.0.2.7:2100 refused: protocol \"svc\" binds filter \"good\" (test.conf:3)",
                                  "not relaying it unfiltered"), 1);
    fwx_firewall_stats st = {.struct_size = sizeof st};
    fwx_firewall_get_stats(f.fw, &st);
    ck_assert_uint_eq(st.connections, 0);

    /* A GUID no plugin has, from the start: a warning when set, a refusal per connection. */
    tu_log_reset();
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, load_ok(SVC_BOUND("\"{7e570000-0000-0000-0000-0000000000ff}\""))),
                 FWX_S_OK);
    ck_assert_int_eq(tu_log_count("policy test.conf:3: protocol \"svc\" binds filter \"{7e570000-0000-0000-0000-0000000000ff}\"",
                                  "its connections are refused"), 1);
    TU_EXPECT_HR(fw_connect(&f, "192.0.2.7:2100"), FWX_E_CLASSNOTREG);
    /* A protocol with no filter bound is not affected. */
    TU_EXPECT_HR(fwx_firewall_set_policy(
                     f.fw, load_ok("protocols = ( { name = \"svc\"; guid = \"{00000002-0000-0000-0000-000000000001}\";"
                                   " protocol = \"tcp\"; port = 2100; } );\n"
                                   "rules = ( { name = \"svc out\"; action = \"allow\"; from = [ \"external\" ];"
                                   " to = [ \"external\" ]; protocols = [ \"svc\" ]; } );\n")),
                 FWX_S_OK);
    TU_EXPECT_HR(fw_connect(&f, "192.0.2.7:2100"), FWX_S_OK);
    fw_close(&f);
}
END_TEST

/* A published connection is decided as going to the rule's server with the rule's
   protocol (not the listen port's), needs no relationship, and a refusal names networks, rule
   and protocol at warn. */
START_TEST(test_publish_decides)
{
    static const char *const text =
        "networks = { dmz = { ranges = [ \"192.168.5.0/24\" ]; }; };\n"
        "protocols = (\n"
        "  { name = \"ftp server\"; guid = \"{00000003-0000-0000-0000-000000000021}\"; protocol = \"tcp\"; port = 21;\n"
        "    direction = \"inbound\"; },\n"
        "  { name = \"alt\"; guid = \"{00000003-0000-0000-0000-000000002121}\"; protocol = \"tcp\"; port = 2121;\n"
        "    direction = \"inbound\"; }\n"
        ");\n"
        "rules = ( { name = \"ftp to the dmz\"; action = \"allow\"; from = [ \"external\" ]; to = [ \"dmz\" ];"
        " protocols = [ \"ftp server\" ]; } );\n"
        "publishing = ( { name = \"ftp\"; listen = \"127.0.0.1:2121\"; server = \"192.168.5.21:21\";"
        " protocol = \"ftp server\"; full_proxy = true; } );\n";
    fwfx f;
    fw_open(&f, "203.0.113.9");
    fwx_policy *p = load_ok(text);
    const fwx__protocol *ftp = fwx__policy_protocol_at(p, 0);
    fwx_guid want = ftp->guid;
    /* The relationship external -> dmz does not exist: the rule stands in for it. */
    fwx__policy_decision d = decide_x(p, "203.0.113.9:40000", "192.168.5.21:21",
                                      (req_opts){ .dir = FWX__DIR_INBOUND, .guid = &want, .published = true });
    TU_EXPECT_HR(d.result, FWX_S_OK);
    d = decide_x(p, "203.0.113.9:40000", "192.168.5.21:21", (req_opts){ .dir = FWX__DIR_INBOUND, .guid = &want });
    TU_EXPECT_HR(d.result, FWX_E_NETWORK_RULES_DENIED);
    TU_EXPECT_HR(fwx_firewall_set_policy(f.fw, p), FWX_S_OK);

    struct sockaddr_storage remote = tu_addr("203.0.113.9:40000"), lst = tu_addr("127.0.0.1:2121"),
                            srv = tu_addr("192.168.5.21:21");
    fwx_connection_params cp = {sizeof cp, fwx_AcceptedConnection, FWX_PROTOCOL_TCP, TU_SA(remote), tu_len(&remote),
                                TU_SA(lst), tu_len(&lst), NULL, FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION,
                                tu_len(&srv), TU_SA(srv)};
    IFWXConnection *c = NULL;
    TU_EXPECT_HR(fwx_connection_open(f.s, &cp, &c), FWX_S_OK);
    /* Listening on 2121 ("alt") does not make it "alt": the rule's protocol is its protocol. */
    ck_assert(fwx_guid_equal(&fwx__conn_from(c)->protocol_guid, &want));
    fwx_connection_close(c);

    /* A source the rule does not name: refused, and the line says why, at warn. */
    IFWXSession *s2 = NULL;
    struct sockaddr_storage inside = tu_addr("192.168.5.30");
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, TU_SA(inside), tu_len(&inside), NULL, 0, NULL};
    TU_EXPECT_HR(fwx_session_open(f.fw, &sp, &s2), FWX_S_OK);
    remote = tu_addr("192.168.5.30:40000");
    cp.external_peer = TU_SA(remote);
    TU_EXPECT_HR(fwx_connection_open(s2, &cp, &c), FWX_E_PROTOCOL_RULES_DENIED);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(tu_log_count("connection 192.168.5.30:40000 -> 192.168.5.21:21 refused by the default rule (no "
                                  "rule matched): access rules deny this protocol; dmz -> dmz (route), protocol \"ftp server\"",
                                  NULL),
                     1);
    fwx_session_close(s2);
    IFWXSession_Release(s2);
    fw_close(&f);
}
END_TEST

/* A FIFO is refused at once (opening it would wait for a writer forever), and a
   NUL byte is reported at its line. */
START_TEST(test_fifo_and_nul)
{
    char dir[] = "/tmp/fwx_policy_dir_XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    fwx_policy *p = NULL;
    fwx_config_error err;
    TU_EXPECT_HR(fwx_policy_load_file(path, &p, &err), FWX_E_CONFIG);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.message, "not a regular file (a fifo)") != NULL, "%s", err.message);
    char *text = NULL;
    TU_EXPECT_HR(fwx_config_read_file(path, &text, &err), FWX_E_CONFIG);
    ck_assert_ptr_null(text);
    unlink(path);
    TU_EXPECT_HR(fwx_policy_load_file(dir, &p, &err), FWX_E_CONFIG);
    ck_assert_msg(strstr(err.message, "not a regular file (a directory)") != NULL, "%s", err.message);

    snprintf(path, sizeof path, "%s/nul.conf", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite("# one\n# two\nrules = ();\0\n", 1, 25, f);
    fclose(f);
    TU_EXPECT_HR(fwx_policy_load_file(path, &p, &err), FWX_E_CONFIG);
    ck_assert_int_eq(err.line, 3);
    ck_assert_msg(strstr(err.message, "nul byte") != NULL, "%s", err.message);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Filters by name: what a plugin may be called, and each filter once. */
START_TEST(test_filter_names)
{
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1;\n    filters = [ \"ftp\", \"ftp\" ]; }\n);\n",
                 4, "protocols.[0].filters.[1]", "filter \"ftp\" is bound twice");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1;\n    filters = [ \"my filter\" ]; }\n);\n",
                 4, "protocols.[0].filters.[0]", "bad filter \"my filter\"");
    expect_error("protocols = (\n  { name = \"p\"; guid = \"{00000001-0000-0000-0000-000000000001}\";\n"
                 "    protocol = \"tcp\"; port = 1; }\n);\n"
                 "publishing = ( { name = \"x\"; listen = \"127.0.0.1:1\"; server = \"127.0.0.3:1\";\n"
                 "  protocol = \"p\"; } );\n",
                 6, "publishing.[0].protocol", "is an outbound definition; a publishing rule needs an inbound one");
}
END_TEST

/* The small site of doc/policy.md decides as the guide says (tests/netns/test_policy_guide.py
   runs it on a network; this runs anywhere). */
START_TEST(test_doc_small_site)
{
    fwx_policy *p = load_ok(policy_doc_block("\n```\n# fwx small site"));
    fwx__policy_decision d = decided(p, "192.168.1.10:40000", "203.0.113.80:80", FWX_S_OK);
    EXPECT_RULE(d, "web and ftp out");
    ck_assert_int_eq(d.relationship, FWX__REL_NAT);
    d = decided(p, "192.168.1.10:40000", "203.0.113.80:21", FWX_S_OK);
    ck_assert_str_eq(d.protocol->name, "ftp");
    ck_assert_uint_eq(d.protocol->n_filters, 1);
    ck_assert_str_eq(d.protocol->filters[0].name, "ftp"); /* bound by the plugin's name */
    TU_EXPECT_HR(decide(p, "192.168.1.10:40000", "203.0.113.80:22").result, FWX_E_PROTOCOL_RULES_DENIED);
    TU_EXPECT_HR(decide(p, "192.168.1.10:40000", "192.168.5.21:21").result, FWX_E_NETWORK_RULES_DENIED);
    TU_EXPECT_HR(decide(p, "203.0.113.80:40000", "192.168.5.21:21").result, FWX_E_NETWORK_RULES_DENIED);
    /* The published server: the rule's server and protocol, the rule standing in for a relationship. */
    const fwx__publish_rule *pub = fwx__policy_publish_at(p, 0);
    ck_assert_ptr_nonnull(pub);
    struct sockaddr_storage srv = tu_addr("192.168.5.21:21");
    ck_assert_ptr_eq(fwx__policy_publish_find(p, NULL, TU_SA(srv)), pub);
    d = decide_x(p, "203.0.113.80:40000", "192.168.5.21:21",
                 (req_opts){ .dir = FWX__DIR_INBOUND, .guid = &pub->protocol->guid, .published = true });
    TU_EXPECT_HR(d.result, FWX_S_OK);
    EXPECT_RULE(d, "ftp to the dmz");
    d = decide_x(p, "192.168.1.10:40000", "192.168.5.21:21",
                 (req_opts){ .dir = FWX__DIR_INBOUND, .guid = &pub->protocol->guid, .published = true });
    TU_EXPECT_HR(d.result, FWX_E_PROTOCOL_RULES_DENIED);
    fwx_policy_free(p);
}
END_TEST

/* The flattening behind every address and port lookup, against a brute-force reading. */
START_TEST(test_interval_map)
{
    uint32_t seed = 777;
    for (int round = 0; round < 300; round++) {
        fwx__range_item items[40], copy[40];
        size_t n = (size_t)(round % 40);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            uint64_t a = (seed >> 8) % 200;
            seed = seed * 1103515245u + 12345u;
            uint64_t b = a + (seed >> 8) % (round % 3 == 0 ? 5 : 120);
            items[i] = (fwx__range_item){ { 0, a }, { 0, b }, (uint32_t)(i % 7), (uint32_t)i };
        }
        memcpy(copy, items, sizeof items);
        fwx__imap m;
        ck_assert_int_eq(fwx__imap_build(items, n, &m), 0);
        for (uint64_t x = 0; x < 330; x++) {
            int best = -1;
            for (size_t i = 0; i < n; i++) {
                if (x < copy[i].lo.lo || x > copy[i].hi.lo)
                    continue;
                uint64_t size = copy[i].hi.lo - copy[i].lo.lo;
                uint64_t bsize = best < 0 ? 0 : copy[best].hi.lo - copy[best].lo.lo;
                if (best < 0 || size < bsize || (size == bsize && copy[i].order < copy[best].order))
                    best = (int)i;
            }
            uint32_t owner = UINT32_MAX;
            fwx__u128 key = { 0, x };
            bool found = fwx__imap_find(&m, key, &owner);
            ck_assert_msg(found == (best >= 0), "round %d point %u: found %d", round, (unsigned)x, found);
            if (best >= 0)
                ck_assert_msg(owner == copy[best].owner, "round %d point %u: owner %u, expected %u", round,
                              (unsigned)x, owner, copy[best].owner);
        }
        /* Disjoint, sorted, and adjacent intervals of one owner merged. */
        for (size_t i = 1; i < m.n; i++) {
            ck_assert(fwx__u128_cmp(m.v[i - 1].hi, m.v[i].lo) < 0);
            ck_assert(!(m.v[i - 1].owner == m.v[i].owner && m.v[i - 1].hi.lo + 1 == m.v[i].lo.lo));
        }
        fwx__imap_free(&m);
    }

    /* The very top of the 128-bit space has no "end + 1". */
    fwx__range_item top[2] = {
        { { UINT64_MAX, 0 }, { UINT64_MAX, UINT64_MAX }, 1, 0 },
        { { 0, 0 }, { UINT64_MAX, UINT64_MAX }, 2, 1 },
    };
    fwx__imap m;
    ck_assert_int_eq(fwx__imap_build(top, 2, &m), 0);
    uint32_t owner;
    fwx__u128 k1 = { UINT64_MAX, UINT64_MAX }, k2 = { UINT64_MAX - 1, UINT64_MAX }, k3 = { 0, 0 };
    ck_assert(fwx__imap_find(&m, k1, &owner) && owner == 1);
    ck_assert(fwx__imap_find(&m, k2, &owner) && owner == 2);
    ck_assert(fwx__imap_find(&m, k3, &owner) && owner == 2);
    ck_assert_uint_eq(m.n, 2);
    fwx__imap_free(&m);
}
END_TEST

/* ---- scale ------------------------------------------------------------------------------------ */

#define S_NETS 500
#define S_RULES 5000
#define S_PROTOS 50
#define S_SETS 10
#define S_USERS 5
#define S_CORP S_NETS /* index of the 10.0.0.0/8 network that holds all the others */

typedef struct s_rule {
    bool allow;
    bool from_net[S_NETS + 1];
    bool from_srcset; /* address set 10.0.0.0/16 */
    bool to_external;
    int to_set; /* -1 or an address set */
    bool all;
    bool proto[S_PROTOS];
    int user; /* -1: anyone */
} s_rule;

static uint32_t s_rng = 12345;

static uint32_t rnd(uint32_t n)
{
    s_rng = s_rng * 1103515245u + 12345u;
    return (s_rng >> 8) % n;
}

static bool s_related(int net)
{
    return net == S_CORP || net % 50 != 7;
}

/* The plain linear reading of the semantics, to compare the indexed engine with. */
static void s_reference(const s_rule *rules, int src_net, bool src_in_srcset, int dst_set, int proto, int user,
                        fwx_result *result, int *rule)
{
    *rule = -1;
    if (!s_related(src_net)) {
        *result = FWX_E_NETWORK_RULES_DENIED;
        return;
    }
    bool site_candidate = false;
    for (int k = 0; k < S_RULES; k++) {
        const s_rule *r = &rules[k];
        bool src = r->from_net[src_net] || (r->from_srcset && src_in_srcset);
        bool pr = r->all || (proto >= 0 && r->proto[proto]);
        bool us = r->user < 0 || r->user == user;
        bool dst = r->to_external || (r->to_set >= 0 && r->to_set == dst_set);
        if (src && pr && us && dst) {
            *rule = k;
            *result = r->allow ? FWX_S_OK
                               : (r->to_set >= 0 ? FWX_E_SITE_AND_CONTENT_RULES_DENIED : FWX_E_PROTOCOL_RULES_DENIED);
            return;
        }
        if (src && pr && us && r->allow)
            site_candidate = true;
    }
    *result = site_candidate ? FWX_E_SITE_AND_CONTENT_RULES_DENIED : FWX_E_PROTOCOL_RULES_DENIED;
}

START_TEST(test_scale)
{
    s_rule *rules = calloc(S_RULES, sizeof *rules);
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    ck_assert_ptr_nonnull(rules);
    ck_assert_ptr_nonnull(f);

    fprintf(f, "networks = {\n  corp = { ranges = [ \"10.0.0.0/8\" ]; };\n");
    for (int i = 0; i < S_NETS; i++)
        fprintf(f, "  n%d = { ranges = [ \"10.%d.%d.0/24\" ]; };\n", i, 100 + i / 250, i % 250);
    fprintf(f, "};\nrelationships = (\n  { from = \"corp\"; to = \"external\"; type = \"nat\"; }");
    for (int i = 0; i < S_NETS; i++)
        if (s_related(i))
            fprintf(f, ",\n  { from = \"n%d\"; to = \"external\"; type = \"%s\"; }", i, i % 2 ? "nat" : "route");
    fprintf(f, "\n);\nprotocols = (\n");
    for (int j = 0; j < S_PROTOS; j++)
        fprintf(f, "  { name = \"p%d\"; guid = \"{%08x-0000-0000-0000-000000000000}\"; protocol = \"tcp\"; port = %d; },\n",
                j, j + 1, 2000 + j);
    fprintf(f, ");\naddress_sets = {\n  srcset = [ \"10.100.0.0/16\" ];\n");
    for (int s = 0; s < S_SETS; s++)
        fprintf(f, "  as%d = [ \"198.51.%d.0/24\" ];\n", s, s);
    fprintf(f, "};\nrules = (\n");
    for (int k = 0; k < S_RULES; k++) {
        s_rule *r = &rules[k];
        r->allow = rnd(10) < 6;
        fprintf(f, "  { name = \"r%d\"; action = \"%s\"; from = [ ", k, r->allow ? "allow" : "deny");
        int nf = 1 + (int)rnd(3);
        for (int i = 0; i < nf; i++) {
            uint32_t pick = rnd(S_NETS + 20);
            if (pick < S_NETS) {
                r->from_net[pick] = true;
                fprintf(f, "%s\"n%u\"", i ? ", " : "", pick);
            } else if (pick < S_NETS + 10) {
                r->from_srcset = true;
                fprintf(f, "%s\"srcset\"", i ? ", " : "");
            } else {
                r->from_net[S_CORP] = true;
                fprintf(f, "%s\"corp\"", i ? ", " : "");
            }
        }
        r->to_set = -1;
        uint32_t to = rnd(10);
        if (to < 6) {
            r->to_external = true;
            fprintf(f, " ]; to = [ \"external\" ]; protocols = [ ");
        } else {
            r->to_set = (int)rnd(S_SETS);
            fprintf(f, " ]; to = [ \"as%d\" ]; protocols = [ ", r->to_set);
        }
        if (rnd(100) < 3) {
            r->all = true;
            fprintf(f, "\"all\"");
        } else {
            int np = 1 + (int)rnd(2);
            for (int i = 0; i < np; i++) {
                uint32_t j = rnd(S_PROTOS);
                r->proto[j] = true;
                fprintf(f, "%s\"p%u\"", i ? ", " : "", j);
            }
        }
        fprintf(f, " ];");
        r->user = -1;
        if (rnd(10) == 0) {
            r->user = (int)rnd(S_USERS);
            fprintf(f, " users = [ \"u%d\" ];", r->user);
        }
        fprintf(f, " },\n");
    }
    fprintf(f, ");\n");
    ck_assert_int_eq(fclose(f), 0);

    fwx_policy *p = load_ok(text);
    char *line_text = text;
    int rule_line[S_RULES];
    for (int k = 0, line = 1; *line_text != '\0' && k < S_RULES; line_text++) {
        if (strncmp(line_text, "  { name = \"r", 13) == 0 && (line_text == text || line_text[-1] == '\n'))
            rule_line[k++] = line;
        line += *line_text == '\n';
    }

    int counts[5] = { 0 };
    for (int n = 0; n < 20000; n++) {
        /* Source: one of the small networks, or corp outside them. */
        uint32_t sn = rnd(S_NETS + 10);
        int src_net = sn < S_NETS ? (int)sn : S_CORP;
        char src[64], dst[64];
        if (src_net == S_CORP)
            snprintf(src, sizeof src, "10.%u.%u.%u:1025", 1 + rnd(99), rnd(256), 1 + rnd(254));
        else
            snprintf(src, sizeof src, "10.%d.%d.%u:1025", 100 + src_net / 250, src_net % 250, 1 + rnd(254));
        bool src_in_srcset = src_net != S_CORP && src_net < 250;
        int dst_set = (int)rnd(S_SETS + 5);
        int port = 2000 + (int)rnd(S_PROTOS + 5);
        if (dst_set < S_SETS)
            snprintf(dst, sizeof dst, "198.51.%d.%u:%d", dst_set, rnd(256), port);
        else
            snprintf(dst, sizeof dst, "203.0.113.%u:%d", rnd(256), port), dst_set = -1;
        int proto = port - 2000 < S_PROTOS ? port - 2000 : -1;
        int user = (int)rnd(S_USERS + 1) - 1;
        char uname[16];
        snprintf(uname, sizeof uname, "u%d", user);

        fwx_result want;
        int want_rule;
        s_reference(rules, src_net, src_in_srcset, dst_set, proto, user, &want, &want_rule);
        fwx__policy_decision d = decide_x(p, src, dst, (req_opts){ .user = user >= 0 ? uname : NULL });
        ck_assert_msg(d.result == want, "request %d %s -> %s user %d: got %s, expected %s (rule %d)", n, src, dst,
                      user, fwx_err_name(d.result), fwx_err_name(want), want_rule);
        if (want_rule >= 0) {
            char name[16];
            snprintf(name, sizeof name, "r%d", want_rule);
            EXPECT_RULE(d, name);
            ck_assert_int_eq(d.rule_line, rule_line[want_rule]);
        } else {
            EXPECT_RULE(d, NULL);
        }
        if (src_net != S_CORP) {
            char want_net[16];
            snprintf(want_net, sizeof want_net, "n%d", src_net);
            ck_assert_str_eq(fwx__network_name(d.source_network), want_net);
        } else {
            ck_assert_str_eq(fwx__network_name(d.source_network), "corp");
        }
        counts[want == FWX_S_OK                              ? 0
               : want == FWX_E_NETWORK_RULES_DENIED          ? 1
               : want == FWX_E_SITE_AND_CONTENT_RULES_DENIED ? 2
               : want == FWX_E_PROTOCOL_RULES_DENIED         ? 3
                                                             : 4]++;
    }
    /* The sample must exercise every outcome, or it proves little. */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(counts[i] > 20, "outcome %d seen %d times only", i, counts[i]);
    ck_assert_int_eq(counts[4], 0);

    fwx_policy_free(p);
    free(text);
    free(rules);
}
END_TEST

/* ---- the read-only view (fwx/policy_view.h) ---------------------------------------------- */

static uint32_t view_network(const fwx_policy *p, const char *name)
{
    for (uint32_t i = 0; i < fwx_policy_network_count(p); i++)
        if (strcmp(fwx_policy_network_name(p, i), name) == 0)
            return i;
    ck_abort_msg("no network %s in the view", name);
    return UINT32_MAX;
}

/* The view's range of family that starts at lo (text), or fails the test. */
static fwx_policy_range view_range_at(const fwx_policy *p, int32_t family, const char *lo)
{
    uint8_t want[16] = {0};
    ck_assert_int_eq(inet_pton(family, lo, want), 1);
    fwx_policy_range r, prev;
    bool have_prev = false;
    for (size_t i = 0; fwx_policy_network_range(p, family, i, &r) == FWX_S_OK; i++) {
        ck_assert_int_eq(r.family, family);
        /* sorted and never overlapping */
        if (have_prev)
            ck_assert_int_lt(memcmp(prev.hi, r.lo, 16), 0);
        prev = r;
        have_prev = true;
        if (memcmp(r.lo, want, 16) == 0)
            return r;
    }
    ck_abort_msg("no range starting at %s", lo);
    return r;
}

START_TEST(test_view)
{
    fwx_policy *p = load_ok(BASE);
    /* networks: the predefined ones first, then the file's */
    ck_assert_uint_eq(fwx_policy_network_count(p), 7);
    ck_assert_str_eq(fwx_policy_network_name(p, FWX_POLICY_NETWORK_INTERNAL), "internal");
    ck_assert_str_eq(fwx_policy_network_name(p, FWX_POLICY_NETWORK_EXTERNAL), "external");
    ck_assert_str_eq(fwx_policy_network_name(p, FWX_POLICY_NETWORK_LOCALHOST), "localhost");
    ck_assert_ptr_null(fwx_policy_network_name(p, 7));
    uint32_t lab = view_network(p, "lab"), dmz = view_network(p, "dmz");
    /* flattened: lab's /16 inside internal's /8 is lab's; the rest of the /8 around it internal's */
    fwx_policy_range r = view_range_at(p, AF_INET, "10.1.0.0");
    ck_assert_uint_eq(r.owner, lab);
    uint8_t hi[16] = {0};
    inet_pton(AF_INET, "10.1.255.255", hi);
    ck_assert_mem_eq(r.hi, hi, 16);
    ck_assert_uint_eq(view_range_at(p, AF_INET, "10.0.0.0").owner, FWX_POLICY_NETWORK_INTERNAL);
    ck_assert_uint_eq(view_range_at(p, AF_INET, "192.168.5.0").owner, dmz);
    ck_assert_uint_eq(view_range_at(p, AF_INET6, "fd00::").owner, FWX_POLICY_NETWORK_INTERNAL);
    TU_EXPECT_HR(fwx_policy_network_range(p, AF_UNIX, 0, &r), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_policy_network_range(p, AF_INET, 100000, &r), FWX_S_FALSE);

    /* relationships: the five of the file, NONE never listed */
    ck_assert_uint_eq(fwx_policy_relation_count(p), 5);
    fwx_policy_relation rel;
    int nat = 0, route = 0, internal_dmz = 0;
    for (size_t i = 0; i < 5; i++) {
        TU_EXPECT_HR(fwx_policy_relation_get(p, i, &rel), FWX_S_OK);
        nat += rel.type == FWX_POLICY_RELATION_NAT;
        route += rel.type == FWX_POLICY_RELATION_ROUTE;
        internal_dmz += rel.from == FWX_POLICY_NETWORK_INTERNAL && rel.to == dmz && rel.type == FWX_POLICY_RELATION_ROUTE;
    }
    ck_assert_int_eq(nat, 3);
    ck_assert_int_eq(route, 2);
    ck_assert_int_eq(internal_dmz, 1);
    TU_EXPECT_HR(fwx_policy_relation_get(p, 5, &rel), FWX_S_FALSE);

    /* address sets */
    ck_assert_uint_eq(fwx_policy_address_set_count(p), 1);
    ck_assert_str_eq(fwx_policy_address_set_name(p, 0), "partners");
    TU_EXPECT_HR(fwx_policy_address_set_range(p, 0, AF_INET, 0, &r), FWX_S_OK);
    uint8_t lo[16] = {0};
    inet_pton(AF_INET, "198.51.100.0", lo);
    inet_pton(AF_INET, "198.51.100.255", hi);
    ck_assert_mem_eq(r.lo, lo, 16);
    ck_assert_mem_eq(r.hi, hi, 16);
    ck_assert_uint_eq(r.owner, 0);
    TU_EXPECT_HR(fwx_policy_address_set_range(p, 0, AF_INET, 1, &r), FWX_S_FALSE);
    TU_EXPECT_HR(fwx_policy_address_set_range(p, 0, AF_INET6, 0, &r), FWX_S_OK);
    TU_EXPECT_HR(fwx_policy_address_set_range(p, 1, AF_INET, 0, &r), FWX_E_INVALIDARG);

    /* protocols, by GUID */
    uint32_t ftp = UINT32_MAX;
    TU_EXPECT_HR(fwx_policy_protocol_find(p, &G_FTP, &ftp), FWX_S_OK);
    TU_EXPECT_HR(fwx_policy_protocol_find(p, &G_UNKNOWN, &ftp), FWX_E_NOT_FOUND);
    fwx_policy_protocol_info pi = {.struct_size = sizeof pi};
    TU_EXPECT_HR(fwx_policy_protocol_get(p, ftp, &pi), FWX_S_OK);
    ck_assert_uint_eq(pi.struct_size, sizeof pi);
    ck_assert_str_eq(pi.name, "ftp");
    ck_assert(fwx_guid_equal(&pi.guid, &G_FTP));
    ck_assert_int_eq(pi.ip_protocol, FWX_PROTOCOL_TCP);
    ck_assert_uint_eq(pi.port_lo, 21);
    ck_assert_uint_eq(pi.port_hi, 21);
    ck_assert_int_eq(pi.direction, FWX_POLICY_OUTBOUND);
    ck_assert_uint_eq(pi.n_filters, 1);
    ck_assert_int_eq(pi.line, line_of(BASE, "name = \"ftp\""));
    fwx_policy_protocol_info small = {.struct_size = 4};
    TU_EXPECT_HR(fwx_policy_protocol_get(p, ftp, &small), FWX_E_INVALIDARG);
    TU_EXPECT_HR(fwx_policy_protocol_get(p, fwx_policy_protocol_count(p), &pi), FWX_S_FALSE);

    /* ports, flattened: 21 is ftp's, 8080-8081 alt-http's inside high's 1024-65535 */
    fwx_policy_port_range pr;
    int saw21 = 0, saw8080 = 0;
    for (size_t i = 0; fwx_policy_port_range_get(p, FWX_PROTOCOL_TCP, FWX_POLICY_OUTBOUND, i, &pr) == FWX_S_OK; i++) {
        fwx_policy_protocol_info o = {.struct_size = sizeof o};
        TU_EXPECT_HR(fwx_policy_protocol_get(p, pr.protocol, &o), FWX_S_OK);
        if (pr.lo == 21) {
            saw21 = pr.hi == 21 && pr.protocol == ftp;
        } else if (pr.lo == 8080) {
            saw8080 = pr.hi == 8081 && strcmp(o.name, "alt-http") == 0;
        }
    }
    ck_assert_int_eq(saw21, 1);
    ck_assert_int_eq(saw8080, 1);
    TU_EXPECT_HR(fwx_policy_port_range_get(p, 1, FWX_POLICY_OUTBOUND, 0, &pr), FWX_E_INVALIDARG);

    /* rules, in file order */
    ck_assert_uint_eq(fwx_policy_rule_count(p), 11);
    fwx_policy_rule_info ri = {.struct_size = sizeof ri};
    TU_EXPECT_HR(fwx_policy_rule_get(p, 0, &ri), FWX_S_OK);
    ck_assert_str_eq(ri.name, "no blocked sites");
    ck_assert_int_eq(ri.allow, 0);
    ck_assert_int_ne(ri.all_protocols, 0);
    ck_assert_uint_eq(ri.n_protocols, 0);
    ck_assert_uint_eq(ri.n_to_domains, 1);
    ck_assert_uint_eq(ri.n_to_networks + ri.n_to_sets, 0);
    TU_EXPECT_HR(fwx_policy_rule_get(p, 1, &ri), FWX_S_OK);
    ck_assert_str_eq(ri.name, "ftp out");
    ck_assert_int_eq(ri.line, line_of(BASE, "name = \"ftp out\""));
    ck_assert_int_ne(ri.allow, 0);
    ck_assert_uint_eq(ri.n_from_networks, 1);
    ck_assert_uint_eq(ri.from_networks[0], FWX_POLICY_NETWORK_INTERNAL);
    ck_assert_uint_eq(ri.n_to_networks, 1);
    ck_assert_uint_eq(ri.to_networks[0], FWX_POLICY_NETWORK_EXTERNAL);
    ck_assert_uint_eq(ri.n_protocols, 1);
    ck_assert_uint_eq(ri.protocols[0], ftp);
    ck_assert_uint_eq(ri.n_users, 0);
    TU_EXPECT_HR(fwx_policy_rule_get(p, 2, &ri), FWX_S_OK);
    ck_assert_uint_eq(ri.n_users, 1);
    TU_EXPECT_HR(fwx_policy_rule_get(p, 3, &ri), FWX_S_OK);
    ck_assert_uint_eq(ri.n_to_sets, 1);
    ck_assert_uint_eq(ri.to_sets[0], 0);
    TU_EXPECT_HR(fwx_policy_rule_get(p, 11, &ri), FWX_S_FALSE);
    fwx_policy_rule_info tiny = {.struct_size = 8};
    TU_EXPECT_HR(fwx_policy_rule_get(p, 0, &tiny), FWX_E_INVALIDARG);

    /* no policy */
    ck_assert_uint_eq(fwx_policy_network_count(NULL), 0);
    ck_assert_uint_eq(fwx_policy_rule_count(NULL), 0);
    TU_EXPECT_HR(fwx_policy_rule_get(NULL, 0, &ri), FWX_E_POINTER);
    TU_EXPECT_HR(fwx_policy_protocol_find(NULL, &G_FTP, &ftp), FWX_E_POINTER);
    fwx_policy_free(p);
}
END_TEST

static Suite *policy_suite(void)
{
    const tu_case cases[] = {
        { "full_config", test_full_config },
        { "minimal_config", test_minimal_config },
        { "load_file", test_load_file },
        { "load_string_name", test_load_string_name },
        { "error_syntax", test_error_syntax },
        { "error_unknown_key", test_error_unknown_key },
        { "error_timeouts", test_error_timeouts },
        { "error_bad_range", test_error_bad_range },
        { "error_unknown_reference", test_error_unknown_reference },
        { "error_duplicate_name", test_error_duplicate_name },
        { "error_bad_port", test_error_bad_port },
        { "error_bad_action", test_error_bad_action },
        { "error_bad_guid", test_error_bad_guid },
        { "error_duplicate_guid", test_error_duplicate_guid },
        { "error_external_ranges", test_error_external_ranges },
        { "network_relationship", test_network_relationship },
        { "first_match", test_first_match },
        { "deny_codes", test_deny_codes },
        { "default_deny", test_default_deny },
        { "users", test_users },
        { "domain_sets", test_domain_sets },
        { "protocol_guid", test_protocol_guid },
        { "inbound", test_inbound },
        { "ipv6", test_ipv6 },
        { "overlapping_networks", test_overlapping_networks },
        { "trailing_commas", test_trailing_commas },
        { "doc_example", test_doc_example },
        { "doc_small_site", test_doc_small_site },
        { "check_against_firewall", test_check_against_firewall },
        { "missing_filter_refused", test_missing_filter_refused },
        { "publish_decides", test_publish_decides },
        { "fifo_and_nul", test_fifo_and_nul },
        { "filter_names", test_filter_names },
        { "interval_map", test_interval_map },
        { "scale", test_scale },
        { "view", test_view },
    };
    return TU_SUITE("policy", cases, 0);
}

int main(void)
{
    return tu_run_suite(policy_suite());
}
