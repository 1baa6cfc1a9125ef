/* vigil tenant: enrolment (add, update) as keylime_tenant does it (reference/keylime.md §1-§4):
 * registrar record, EK certificate, identity quote with the NK bound in PCR 16, U to the agent,
 * V and the policies to the verifier, then --verify; and the status, list and delete commands. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "agent_state.h"
#include "cleanup.h"
#include "ek_cert.h"
#include "encoding.h"
#include "quote.h"
#include "tenant.h"
#include "tls.h"

static void name_state(json_t *agent)
{
        json_t *st = json_object_get(agent, "operational_state");

        if (json_is_integer(st))
                json_object_set_new(agent, "operational_state",
                                    json_string(vg_agent_state_name((long)json_integer_value(st))));
}

static void set_fid(struct tenant *t, const char *ip, long port)
{
        if (ip && port > 0)
                snprintf(t->agent_fid, sizeof(t->agent_fid), "Agent %s (%s:%ld)", t->a.uuid, ip,
                         port);
        else
                snprintf(t->agent_fid, sizeof(t->agent_fid), "Agent %s", t->a.uuid);
}

static const char *verifier_fid(const struct tenant *t)
{
        return t->verifier_base + strlen("https://");
}

static const char *registrar_fid(const struct tenant *t)
{
        return t->registrar_base + strlen("https://");
}

/* ---- registrar ---------------------------------------------------------------------------- */

/* GET the registrar's record; 0 and t->reg filled, or the exit status after saying why. */
static int reg_fetch(struct tenant *t)
{
        char path[400];
        struct vg_error err = { 0 };
        json_t *reply = NULL, *res;
        int st;

        snprintf(path, sizeof(path), "/v%s/agents/%s", tenant_registrar_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "GET", t->registrar_base, path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("cannot read agent %s from the registrar: %s", t->a.uuid,
                                   vg_error_str(&err));
        if (st != 200) {
                tenant_fail("Agent %s does not exist on Registrar (%s) or is not active: GET "
                            "%s%s: %d %s. Check the agent's log for registration errors.",
                            t->a.uuid, registrar_fid(t), t->registrar_base, path, st,
                            tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        res = json_object_get(reply, "results");
        if (!json_is_object(res) || !json_is_string(json_object_get(res, "aik_tpm")) ||
            !json_is_string(json_object_get(res, "ek_tpm"))) {
                json_decref(reply);
                return tenant_fail("GET %s%s: the reply has no results.aik_tpm and "
                                   "results.ek_tpm; is this a Keylime registrar?",
                                   t->registrar_base, path);
        }
        t->reg.json = json_incref(res);
        json_decref(reply);
        t->reg.aik_tpm = json_string_value(json_object_get(res, "aik_tpm"));
        t->reg.ek_tpm = json_string_value(json_object_get(res, "ek_tpm"));
        t->reg.ekcert = json_string_value(json_object_get(res, "ekcert"));
        t->reg.mtls_cert = json_string_value(json_object_get(res, "mtls_cert"));
        t->reg.ip = json_string_value(json_object_get(res, "ip"));
        t->reg.port = json_is_integer(json_object_get(res, "port"))
                          ? (long)json_integer_value(json_object_get(res, "port"))
                          : -1;
        if (json_is_string(json_object_get(res, "port")))
                t->reg.port = strtol(json_string_value(json_object_get(res, "port")), NULL, 10);
        t->reg.regcount = (long)json_integer_value(json_object_get(res, "regcount"));
        return 0;
}

/* Keylime's check_ek: the EK certificate must chain to tpm_cert_store and certify ek_tpm. */
static int check_ek(struct tenant *t)
{
        _cleanup_(vg_ek_store_freep) struct vg_ek_store *store = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *ek = NULL;
        struct vg_ek_cert cert = { 0 };
        struct vg_error err = { 0 };
        const char *dir = vg_config_string(t->cfg, "tpm_cert_store");
        int r;

        if (!vg_config_boolean(t->cfg, "require_ek_cert")) {
                tenant_say("WARNING: EK certificate checking is disabled (require_ek_cert = "
                           "false) for %s: vigil cannot tell a real TPM from a forged one!",
                           t->agent_fid);
                return 0;
        }
        if (!t->reg.ekcert || !*t->reg.ekcert || strcmp(t->reg.ekcert, "emulator") == 0)
                return tenant_fail("%s has no EK certificate in the registrar, and "
                                   "require_ek_cert is true",
                                   t->agent_fid);
        if (!dir || !*dir)
                return tenant_fail("require_ek_cert is true but tpm_cert_store is not set");
        if (vg_ek_store_load(dir, &store, &err) < 0)
                return tenant_fail("tpm_cert_store: %s", vg_error_str(&err));
        if (vg_tpm_public_parse_b64(t->reg.ek_tpm, &ek, &err) < 0)
                return tenant_fail("the registrar's ek_tpm for %s: %s", t->agent_fid,
                                   vg_error_str(&err));
        if (vg_ek_cert_decode(t->reg.ekcert, &cert, &err) < 0)
                return tenant_fail("the registrar's ekcert for %s: %s", t->agent_fid,
                                   vg_error_str(&err));
        r = vg_ek_cert_verify(store, &cert, ek, &err);
        vg_ek_cert_clear(&cert);
        if (r < 0)
                return tenant_fail("invalid EK certificate for %s: it does not verify against "
                                   "tpm_cert_store %s (%zu certificates): %s",
                                   t->agent_fid, dir, vg_ek_store_count(store), vg_error_str(&err));
        tenant_say("EK certificate of %s verified against %s", t->agent_fid, dir);
        return 0;
}

/* ---- the agent ---------------------------------------------------------------------------- */

static int agent_tls_setup(struct tenant *t)
{
        char cert[4096], key[4096];
        const char *dir = vg_config_string(t->cfg, "tls_dir");
        const char *c = vg_config_string(t->cfg, "client_cert");
        const char *k = vg_config_string(t->cfg, "client_key");
        struct vg_error err = { 0 };

        if (!t->reg.mtls_cert || !*t->reg.mtls_cert || strcmp(t->reg.mtls_cert, "disabled") == 0)
                return tenant_fail("%s registered without an mTLS certificate; vigil does not "
                                   "send keys to an agent it cannot authenticate",
                                   t->agent_fid);
        if (!vg_config_boolean(t->cfg, "enable_agent_mtls"))
                return tenant_fail("enable_agent_mtls = false is not supported: keys would "
                                   "travel in the clear");
        snprintf(cert, sizeof(cert), c[0] == '/' ? "%s%s" : "%s/%s", c[0] == '/' ? "" : dir, c);
        snprintf(key, sizeof(key), k[0] == '/' ? "%s%s" : "%s/%s", k[0] == '/' ? "" : dir, k);
        struct vg_tls_client_config tc = {
                .pinned_cert_pem = t->reg.mtls_cert,
                .cert_file = cert,
                .key_file = key,
                .key_password = vg_config_string(t->cfg, "client_key_password"),
        };
        t->agent_tls = vg_tls_client_ctx_new(&tc, &err);
        if (!t->agent_tls)
                return tenant_fail("TLS set-up for %s (its registered mtls_cert): %s", t->agent_fid,
                                   vg_error_str(&err));
        return 0;
}

/* A request to the agent, retried on transport failures as Keylime does (max_retries). */
static int agent_request(struct tenant *t, const char *method, const char *path, json_t *body,
                         json_t **out, struct vg_error *err)
{
        for (unsigned n = 1;; n++) {
                int st =
                    tenant_request(t, t->agent_tls, method, t->agent_base, path, body, out, err);
                if (st >= 0 || n >= t->max_retries)
                        return st;
                double d = tenant_retry_delay(t, n);
                tenant_say("connection to %s failed %u/%u times (%s), trying again in %g "
                           "seconds...",
                           t->agent_fid, n, t->max_retries, vg_error_str(err), d);
                tenant_sleep(d);
        }
}

static int agent_version(struct tenant *t)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        int st;

        if (t->a.agent_api_version) {
                snprintf(t->agent_api, sizeof(t->agent_api), "%s", t->a.agent_api_version);
                return 0;
        }
        st = agent_request(t, "GET", "/version", NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("cannot reach %s: %s", t->agent_fid, vg_error_str(&err));
        tenant_negotiate(st == 200 ? reply : NULL, "2.5", t->agent_api);
        json_decref(reply);
        tenant_say("using API version %s for %s", t->agent_api, t->agent_fid);
        return 0;
}

static unsigned accepted_sig_algs(const struct tenant *t)
{
        unsigned m = 0;

        if (tenant_alg_accepted(t, "accept_tpm_signing_algs", "rsassa"))
                m |= 1u << VG_QUOTE_SIG_RSASSA;
        if (tenant_alg_accepted(t, "accept_tpm_signing_algs", "rsapss"))
                m |= 1u << VG_QUOTE_SIG_RSAPSS;
        if (tenant_alg_accepted(t, "accept_tpm_signing_algs", "ecdsa"))
                m |= 1u << VG_QUOTE_SIG_ECDSA;
        return m;
}

/* GET /quotes/identity and check it: AK signature, nonce, PCR 16 = H(NK PEM). On success
 * *nk_pem is the agent's NK. */
static int identity_quote(struct tenant *t, char **nk_pem)
{
        _cleanup_tpm_public_ struct vg_tpm_public *ak = NULL;
        _cleanup_quote_ struct vg_quote *q = NULL;
        enum vg_quote_status qs = VG_QUOTE_OK;
        struct vg_error err = { 0 };
        json_t *reply = NULL, *res;
        enum vg_hash_alg alg;
        char nonce[21], path[200];
        unsigned sig_algs = accepted_sig_algs(t);
        int st, r = 1;

        if (vg_tpm_public_parse_b64(t->reg.aik_tpm, &ak, &err) < 0 ||
            vg_tpm_public_check_ak(ak, &err) < 0)
                return tenant_fail("the registrar's aik_tpm for %s: %s", t->agent_fid,
                                   vg_error_str(&err));
        if (!sig_algs)
                return tenant_fail("accept_tpm_signing_algs names none of rsassa, rsapss and "
                                   "ecdsa: no quote could be accepted");
        if (tenant_random_alnum(nonce, 20) < 0)
                return tenant_fail("no random numbers");
        snprintf(path, sizeof(path), "/v%s/quotes/identity?nonce=%s", t->agent_api, nonce);
        st = agent_request(t, "GET", path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("tenant cannot establish connection to %s: %s", t->agent_fid,
                                   vg_error_str(&err));
        res = json_object_get(reply, "results");
        const char *quote = json_string_value(json_object_get(res, "quote"));
        const char *pubkey = json_string_value(json_object_get(res, "pubkey"));
        const char *hash_alg = json_string_value(json_object_get(res, "hash_alg"));
        const char *enc_alg = json_string_value(json_object_get(res, "enc_alg"));
        const char *sign_alg = json_string_value(json_object_get(res, "sign_alg"));

        if (st != 200) {
                tenant_fail("TPM quote request to %s: GET %s%s: %d %s", t->agent_fid, t->agent_base,
                            path, st, tenant_status_text(reply));
                goto out;
        }
        if (!quote || !pubkey || !hash_alg || !enc_alg || !sign_alg) {
                tenant_fail("unexpected reply from %s to GET %s: expected results.quote, "
                            "pubkey, hash_alg, enc_alg and sign_alg",
                            t->agent_fid, path);
                goto out;
        }
        if (!tenant_alg_accepted(t, "accept_tpm_hash_algs", hash_alg) ||
            vg_hash_alg_from_name(hash_alg, &alg) < 0) {
                tenant_fail("TPM quote from %s is using an unaccepted hash algorithm: %s",
                            t->agent_fid, hash_alg);
                goto out;
        }
        if (!tenant_alg_accepted(t, "accept_tpm_encryption_algs", enc_alg)) {
                tenant_fail("TPM quote from %s is using an unaccepted encryption algorithm: %s",
                            t->agent_fid, enc_alg);
                goto out;
        }
        if (!tenant_alg_accepted(t, "accept_tpm_signing_algs", sign_alg)) {
                tenant_fail("TPM quote from %s is using an unaccepted signing algorithm: %s",
                            t->agent_fid, sign_alg);
                goto out;
        }
        struct vg_quote_expect exp = { .nonce = (const uint8_t *)nonce,
                                       .nonce_len = strlen(nonce),
                                       .hash_alg = alg,
                                       .sig_algs = sig_algs };
        if (vg_quote_parse(quote, strlen(quote), &q, &err) < 0 ||
            vg_quote_verify(q, ak->pkey, &exp, &qs, &err) < 0 ||
            vg_quote_check_clock(NULL, &q->attest.clock_info, &qs, &err) < 0 ||
            vg_quote_check_pcr16(&q->pcrs, alg, pubkey, strlen(pubkey), &qs, &err) < 0) {
                tenant_fail("TPM quote from %s is invalid for nonce %s: %s", t->agent_fid, nonce,
                            vg_error_str(&err));
                if (t->reg.regcount > 1)
                        tenant_say("WARNING: %s had more than one EK registered to it (regcount "
                                   "%ld): the system may be misconfigured or a malicious host "
                                   "present. Run 'regdelete' for this agent and restart it.",
                                   t->agent_fid, t->reg.regcount);
                goto out;
        }
        tenant_say("Quote from %s validated", t->agent_fid);
        *nk_pem = strdup(pubkey);
        r = *nk_pem ? 0 : tenant_fail("out of memory");
out:
        json_decref(reply);
        return r;
}

/* POST /keys/ukey: U encrypted to the NK, the auth_tag and the encrypted payload. */
static int send_ukey(struct tenant *t, const char *nk_pem)
{
        _cleanup_free_ char *u_b64 = NULL;
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[64];
        BIO *bio = BIO_new_mem_buf(nk_pem, -1);
        EVP_PKEY *nk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        int st;

        BIO_free(bio);
        if (!nk)
                return tenant_fail("the public key %s sent with its quote is not a PEM public "
                                   "key",
                                   t->agent_fid);
        st = vg_payload_encrypt_half(nk, t->bundle.u, &u_b64, &err);
        EVP_PKEY_free(nk);
        if (st < 0)
                return tenant_fail("encrypting U to the key of %s: %s", t->agent_fid,
                                   vg_error_str(&err));
        json_t *body =
            json_pack("{s:s, s:s}", "encrypted_key", u_b64, "auth_tag", t->bundle.auth_tag_hex);
        if (t->bundle.payload_b64)
                json_object_set_new(body, "payload", json_string(t->bundle.payload_b64));
        snprintf(path, sizeof(path), "/v%s/keys/ukey", t->agent_api);
        st = agent_request(t, "POST", path, body, &reply, &err);
        json_decref(body);
        if (st < 0) {
                json_decref(reply);
                return tenant_fail("cannot connect to %s to post encrypted U: %s", t->agent_fid,
                                   vg_error_str(&err));
        }
        if (st != 200) {
                tenant_fail("posting of encrypted U to %s failed: POST %s%s: %d %s", t->agent_fid,
                            t->agent_base, path, st, tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        json_decref(reply);
        tenant_say("encrypted U%s delivered to %s", t->bundle.payload_b64 ? " and payload" : "",
                   t->agent_fid);
        return 0;
}

/* ---- the verifier ------------------------------------------------------------------------- */

static json_t *strv_json(char *const *v)
{
        json_t *a = json_array();

        for (size_t i = 0; v[i]; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static int cv_add(struct tenant *t)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *v_b64 = NULL;
        json_t *reply = NULL;
        char path[400];
        int st;

        if (t->have_bundle &&
            !(v_b64 = vg_b64_encode(t->bundle.v, sizeof(t->bundle.v), VG_B64_STD)))
                return tenant_fail("out of memory");
        const char *ip = t->a.cv_agent_ip ? t->a.cv_agent_ip
                         : t->a.agent_ip  ? t->a.agent_ip
                                          : t->reg.ip;
        json_t *body = json_object();
        json_object_set_new(body, "v", v_b64 ? json_string(v_b64) : json_null());
        json_object_set_new(body, "cloudagent_ip", json_string(ip));
        json_object_set_new(body, "cloudagent_port", json_integer(t->reg.port));
        json_object_set_new(body, "verifier_ip",
                            json_string(vg_config_string(t->cfg, "verifier_ip")));
        json_object_set_new(body, "verifier_port",
                            json_integer(vg_config_integer(t->cfg, "verifier_port")));
        json_object_set_new(body, "tpm_policy", json_string(t->tpm_policy));
        json_object_set_new(body, "runtime_policy", json_string(t->runtime_policy_b64));
        json_object_set_new(body, "runtime_policy_name",
                            json_string(t->a.runtime_policy_name ? t->a.runtime_policy_name : ""));
        json_object_set_new(body, "runtime_policy_key", json_string(t->runtime_policy_key));
        json_object_set_new(body, "mb_policy",
                            t->mb_policy ? json_string(t->mb_policy) : json_null());
        json_object_set_new(body, "mb_policy_name",
                            json_string(t->a.mb_policy_name ? t->a.mb_policy_name : ""));
        json_object_set_new(body, "ima_sign_verification_keys", json_string(""));
        json_object_set_new(body, "metadata", json_string(t->metadata ? t->metadata : "{}"));
        json_object_set_new(body, "revocation_key",
                            json_string(t->revocation_key ? t->revocation_key : ""));
        json_object_set_new(body, "accept_tpm_hash_algs",
                            strv_json(vg_config_strv(t->cfg, "accept_tpm_hash_algs")));
        json_object_set_new(body, "accept_tpm_encryption_algs",
                            strv_json(vg_config_strv(t->cfg, "accept_tpm_encryption_algs")));
        json_object_set_new(body, "accept_tpm_signing_algs",
                            strv_json(vg_config_strv(t->cfg, "accept_tpm_signing_algs")));
        json_object_set_new(body, "ak_tpm", json_string(t->reg.aik_tpm));
        json_object_set_new(body, "mtls_cert", json_string(t->reg.mtls_cert));
        json_object_set_new(body, "supported_version", json_string(t->agent_api));

        snprintf(path, sizeof(path), "/v%s/agents/%s", tenant_verifier_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "POST", t->verifier_base, path, body, &reply, &err);
        json_decref(body);
        if (st < 0)
                return tenant_fail("cannot connect to Verifier (%s) while adding %s: %s",
                                   verifier_fid(t), t->agent_fid, vg_error_str(&err));
        if (st == 409) {
                json_decref(reply);
                return tenant_fail("Verifier (%s) responded indicating a conflict for %s. Run "
                                   "\"delete\" or \"update\" first.",
                                   verifier_fid(t), t->agent_fid);
        }
        if (st != 200) {
                tenant_fail("POST %s%s: %d %s", t->verifier_base, path, st,
                            tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        json_decref(reply);

        /* Keylime then polls the verifier's status until the agent shows up. */
        for (unsigned n = 0;;) {
                int code = 0;

                if (tenant_cmd_cvstatus(t, false, &code) == 0 && code == 200)
                        break;
                if (++n >= t->max_retries)
                        return tenant_fail("%s still not added to Verifier (%s) after %u tries",
                                           t->agent_fid, verifier_fid(t), n);
                double d = tenant_retry_delay(t, n);
                tenant_say("%s still not added to Verifier (%s) at try %u/%u, trying again in "
                           "%g seconds...",
                           t->agent_fid, verifier_fid(t), n, t->max_retries, d);
                tenant_sleep(d);
        }
        tenant_say("%s added to Verifier (%s)", t->agent_fid, verifier_fid(t));
        return 0;
}

static void cv_stop(struct tenant *t)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[400];
        int st;

        snprintf(path, sizeof(path), "/v%s/agents/%s/stop", tenant_verifier_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "PUT", t->verifier_base, path, NULL, &reply, &err);
        if (st == 200)
                tenant_say("%s stopped on Verifier (%s)", t->agent_fid, verifier_fid(t));
        else if (st < 0)
                tenant_say("stopping %s failed: %s", t->agent_fid, vg_error_str(&err));
        else
                tenant_say("stopping %s failed: PUT %s%s: %d %s", t->agent_fid, t->verifier_base,
                           path, st, tenant_status_text(reply));
        json_decref(reply);
}

/* Poll GET /keys/verify until the agent's HMAC(K, challenge) is ours: it combined U with the V
 * the verifier released after the first good quote. */
static int verify_key(struct tenant *t)
{
        char challenge[21], path[200], want[2 * 48 + 1];
        unsigned char mac[48];
        unsigned mac_len = 0;

        if (tenant_random_alnum(challenge, 20) < 0)
                return tenant_fail("no random numbers");
        if (!HMAC(EVP_sha384(), t->bundle.k, sizeof(t->bundle.k), (const unsigned char *)challenge,
                  20, mac, &mac_len))
                return tenant_fail("HMAC-SHA384 failed");
        for (unsigned i = 0; i < mac_len; i++)
                snprintf(want + 2 * i, 3, "%02x", mac[i]);
        snprintf(path, sizeof(path), "/v%s/keys/verify?challenge=%s", t->agent_api, challenge);
        for (unsigned n = 1;; n++) {
                struct vg_error err = { 0 };
                json_t *reply = NULL;
                int st =
                    tenant_request(t, t->agent_tls, "GET", t->agent_base, path, NULL, &reply, &err);
                const char *got =
                    json_string_value(json_object_get(json_object_get(reply, "results"), "hmac"));
                size_t got_len = got ? strlen(got) : 0;

                if (st == 200 && got && got_len == strlen(want) &&
                    vg_ct_equal(got, want, got_len)) {
                        json_decref(reply);
                        tenant_say("Successful key derivation for %s", t->agent_fid);
                        return 0;
                }
                char why[600];
                if (st < 0)
                        snprintf(why, sizeof(why), "%s", vg_error_str(&err));
                else if (st != 200)
                        snprintf(why, sizeof(why), "%d %s", st, tenant_status_text(reply));
                else
                        snprintf(why, sizeof(why),
                                 "HMAC mismatch (expected length %zu, received "
                                 "length %zu)",
                                 strlen(want), got_len);
                json_decref(reply);
                if (n >= t->max_retries) {
                        cv_stop(t);
                        return tenant_fail("Failed key derivation for %s after %u tries: %s",
                                           t->agent_fid, n, why);
                }
                double d = tenant_retry_delay(t, n);
                tenant_say("Key derivation not yet complete for %s at try %u/%u (%s), trying "
                           "again in %g seconds...",
                           t->agent_fid, n, t->max_retries, why, d);
                tenant_sleep(d);
        }
}

/* ---- add / update --------------------------------------------------------------------------- */

static int read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        uint8_t *buf;
        size_t n = 0;

        if (fd < 0 || fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode))
                return -EINVAL;
        if ((uint64_t)sb.st_size > max)
                return -EFBIG;
        buf = malloc((size_t)sb.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (n < (size_t)sb.st_size) {
                ssize_t got = read(fd, buf + n, (size_t)sb.st_size - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        int e = got < 0 ? -errno : -EIO;
                        free(buf);
                        return e;
                }
                n += (size_t)got;
        }
        buf[n] = 0;
        *out = buf;
        *len = n;
        return 0;
}

static int prepare_payload(struct tenant *t)
{
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0, max = (size_t)vg_config_integer(t->cfg, "max_payload_size");
        struct vg_error err = { 0 };
        int r;

        if (t->a.file) {
                /* The base64 of IV, data and tag must fit max_payload_size. */
                r = read_all(t->a.file, max, &data, &len);
                if (r == -EFBIG)
                        return tenant_fail("-f %s: payload size exceeds max_payload_size %zu",
                                           t->a.file, max);
                if (r < 0)
                        return tenant_fail("-f %s: %s", t->a.file,
                                           r == -EINVAL ? "not a regular file" : strerror(-r));
        } else if (t->a.cert_dir) {
                if (tenant_cert_package(t->a.cert_dir, t->a.uuid, t->a.include_dir, &data, &len,
                                        &t->revocation_key, &t->metadata, &err) < 0)
                        return tenant_fail("--cert %s: %s", t->a.cert_dir, vg_error_str(&err));
        } else {
                return 0; /* Keylime sends neither U nor V then. */
        }
        if (vg_payload_bundle_new(data, len, t->a.uuid, &t->bundle, &err) < 0)
                return tenant_fail("encrypting the payload: %s", vg_error_str(&err));
        t->have_bundle = true;
        if (t->bundle.payload_b64 && strlen(t->bundle.payload_b64) > max)
                return tenant_fail("payload size %zu exceeds max_payload_size %zu",
                                   strlen(t->bundle.payload_b64), max);
        return 0;
}

int tenant_cmd_add(struct tenant *t, bool update)
{
        _cleanup_free_ char *nk_pem = NULL;
        const char *ip;
        long port;
        int r;

        if ((r = tenant_policies_prepare(t)) != 0 || (r = prepare_payload(t)) != 0 ||
            (r = reg_fetch(t)) != 0)
                return r;
        ip = t->a.agent_ip ? t->a.agent_ip : t->reg.ip;
        port = t->a.agent_port ? strtol(t->a.agent_port, NULL, 10) : t->reg.port;
        if (!ip || port <= 0 || port > 65535)
                return tenant_fail("the registrar has no address for agent %s; give it with -t "
                                   "and -tp",
                                   t->a.uuid);
        t->reg.port = port;
        snprintf(t->agent_base, sizeof(t->agent_base),
                 strchr(ip, ':') ? "https://[%s]:%ld" : "https://%s:%ld", ip, port);
        set_fid(t, ip, port);
        if ((r = check_ek(t)) != 0 || (r = agent_tls_setup(t)) != 0)
                return r;
        if (update && (r = tenant_cmd_delete(t)) != 0)
                return r;
        if ((r = agent_version(t)) != 0 || (r = identity_quote(t, &nk_pem)) != 0)
                return r;
        if (t->have_bundle && (r = send_ukey(t, nk_pem)) != 0)
                return r;
        if ((r = cv_add(t)) != 0)
                return r;
        if (t->a.verify)
                return verify_key(t);
        return 0;
}

/* ---- status, lists, delete, reactivate ------------------------------------------------------ */

int tenant_cmd_cvstatus(struct tenant *t, bool not_found_fail, int *http_status)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL, *res;
        char path[400];
        int st;

        if (!t->agent_fid[0])
                set_fid(t, NULL, 0);
        snprintf(path, sizeof(path), "/v%s/agents/%s", tenant_verifier_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "GET", t->verifier_base, path, NULL, &reply, &err);
        if (http_status)
                *http_status = st;
        if (st < 0)
                return tenant_fail("cannot read %s from Verifier (%s): %s", t->agent_fid,
                                   verifier_fid(t), vg_error_str(&err));
        if (st == 404) {
                json_decref(reply);
                if (not_found_fail)
                        return tenant_fail("%s does not exist on Verifier (%s)", t->agent_fid,
                                           verifier_fid(t));
                return 0;
        }
        res = json_object_get(reply, "results");
        if (st != 200 || !json_is_object(res)) {
                tenant_fail("status of %s: GET %s%s: %d %s", t->agent_fid, t->verifier_base, path,
                            st, tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        if (not_found_fail) {
                name_state(res);
                tenant_say("Agent Info from Verifier (%s):", verifier_fid(t));
                json_t *out = json_pack("{s:O}", t->a.uuid, res);
                tenant_print_json(out);
                json_decref(out);
        }
        json_decref(reply);
        return 0;
}

static int reg_get_print(struct tenant *t)
{
        int r = reg_fetch(t);

        if (r)
                return r;
        json_t *info = json_deep_copy(t->reg.json);
        json_object_set_new(info, "operational_state",
                            json_string(vg_agent_state_name(VG_AGENT_REGISTERED)));
        json_t *out = json_pack("{s:o}", t->a.uuid, info);
        tenant_say("Agent %s exists on Registrar (%s). Agent Info:", t->a.uuid, registrar_fid(t));
        tenant_print_json(out);
        json_decref(out);
        return 0;
}

int tenant_cmd_regstatus(struct tenant *t)
{
        return reg_get_print(t);
}

int tenant_cmd_status(struct tenant *t)
{
        int r = reg_get_print(t), code = 0;

        if (r)
                return r;
        set_fid(t, t->reg.ip, t->reg.port);
        r = tenant_cmd_cvstatus(t, false, &code);
        if (r)
                return r;
        if (code == 404) {
                tenant_say("%s is registered but not added to Verifier (%s)", t->agent_fid,
                           verifier_fid(t));
                return 0;
        }
        return tenant_cmd_cvstatus(t, true, NULL);
}

static int simple_get(struct tenant *t, const char *base, const char *path, const char *what,
                      bool bulk)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL, *res, *v;
        const char *k;
        int st;

        st = tenant_request(t, t->tls, "GET", base, path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("%s: %s", what, vg_error_str(&err));
        res = json_object_get(reply, "results");
        if (st != 200 || !res) {
                tenant_fail("%s: GET %s%s: %d %s", what, base, path, st, tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        if (bulk)
                json_object_foreach (res, k, v)
                        name_state(v);
        tenant_say("%s retrieved:", what);
        tenant_print_json(res);
        json_decref(reply);
        return 0;
}

int tenant_cmd_reglist(struct tenant *t)
{
        char path[64], what[400];

        snprintf(path, sizeof(path), "/v%s/agents/", tenant_registrar_api(t));
        snprintf(what, sizeof(what), "Agent list from Registrar (%s)", registrar_fid(t));
        return simple_get(t, t->registrar_base, path, what, false);
}

int tenant_cmd_cvlist(struct tenant *t, bool bulk)
{
        char path[400], what[400];
        const char *id = t->a.verifier_id ? t->a.verifier_id : "";

        for (const char *p = id; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                        return tenant_fail("-vi: expected letters, digits, '-', '_' or '.', "
                                           "found '%s'",
                                           id);
        snprintf(path, sizeof(path),
                 bulk ? "/v%s/agents/?bulk=True&verifier=%s" : "/v%s/agents/?verifier=%s",
                 tenant_verifier_api(t), id);
        snprintf(what, sizeof(what),
                 bulk ? "Bulk agent info from Verifier (%s)" : "Agent list from Verifier (%s)",
                 verifier_fid(t));
        return simple_get(t, t->verifier_base, path, what, bulk);
}

int tenant_cmd_regdelete(struct tenant *t)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[400];
        int st;

        snprintf(path, sizeof(path), "/v%s/agents/%s", tenant_registrar_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "DELETE", t->registrar_base, path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("deleting agent %s from the registrar: %s", t->a.uuid,
                                   vg_error_str(&err));
        if (st != 200) {
                tenant_fail("deleting agent %s from Registrar (%s): DELETE %s%s: %d %s", t->a.uuid,
                            registrar_fid(t), t->registrar_base, path, st,
                            tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        json_decref(reply);
        tenant_say("Agent %s deleted from Registrar (%s)", t->a.uuid, registrar_fid(t));
        return 0;
}

/* Keylime deletes from the verifier only; the registration stays (see regdelete). */
int tenant_cmd_delete(struct tenant *t)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[400];
        int st, code = 0;

        if (!t->agent_fid[0])
                set_fid(t, NULL, 0);
        if (!t->a.no_verifier_check) {
                if (tenant_cmd_cvstatus(t, false, &code) != 0)
                        return 1;
                if (code == 404) {
                        tenant_say("%s is not on Verifier (%s): nothing to delete", t->agent_fid,
                                   verifier_fid(t));
                        return 0;
                }
        }
        snprintf(path, sizeof(path), "/v%s/agents/%s", tenant_verifier_api(t), t->a.uuid);
        st = tenant_request(t, t->tls, "DELETE", t->verifier_base, path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("cannot connect to Verifier (%s) to delete %s: %s",
                                   verifier_fid(t), t->agent_fid, vg_error_str(&err));
        if (st == 200 || st == 404) {
                json_decref(reply);
                tenant_say(st == 200 ? "Agent %s deleted from the CV"
                                     : "Agent %s is already absent from the CV",
                           t->a.uuid);
                return 0;
        }
        if (st != 202) {
                tenant_fail("deleting %s: DELETE %s%s: %d %s", t->agent_fid, t->verifier_base, path,
                            st, tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        json_decref(reply);
        /* 202: the verifier terminates the agent's polling first; wait until it is gone. */
        for (unsigned n = 1;; n++) {
                if (tenant_cmd_cvstatus(t, false, &code) != 0)
                        return 1;
                if (code == 404)
                        break;
                if (n >= t->max_retries)
                        return tenant_fail("%s was not deleted from Verifier (%s) after %u tries",
                                           t->agent_fid, verifier_fid(t), n);
                double d = tenant_retry_delay(t, n);
                tenant_say("%s still not deleted from Verifier (%s) at try %u/%u, trying again in "
                           "%g seconds...",
                           t->agent_fid, verifier_fid(t), n, t->max_retries, d);
                tenant_sleep(d);
        }
        tenant_say("Agent %s deleted from the CV", t->a.uuid);
        return 0;
}

int tenant_cmd_reactivate(struct tenant *t)
{
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[400];
        int st, code = 0;

        set_fid(t, NULL, 0);
        if (!t->a.no_verifier_check) {
                if (tenant_cmd_cvstatus(t, false, &code) != 0)
                        return 1;
                if (code == 404)
                        return tenant_fail("%s does not exist on Verifier (%s)", t->agent_fid,
                                           verifier_fid(t));
        }
        snprintf(path, sizeof(path), "/v%s/agents/%s/reactivate", tenant_verifier_api(t),
                 t->a.uuid);
        st = tenant_request(t, t->tls, "PUT", t->verifier_base, path, NULL, &reply, &err);
        if (st < 0)
                return tenant_fail("cannot connect to Verifier (%s): %s", verifier_fid(t),
                                   vg_error_str(&err));
        if (st != 200) {
                tenant_fail("reactivating %s: PUT %s%s: %d %s", t->agent_fid, t->verifier_base,
                            path, st, tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        json_decref(reply);
        tenant_say("%s re-activated", t->agent_fid);
        return 0;
}
