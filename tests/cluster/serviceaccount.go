package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// ServiceAccount tokens: the TokenRequest subresource
// (serviceaccounts/<name>/token, `kubectl create token`) issues JWTs and the
// token authenticator accepts them as system:serviceaccount:<ns>:<name> with
// the groups system:serviceaccounts and system:serviceaccounts:<ns>
// (system:authenticated is added by the authenticator chain). Tokens are
// HS256-signed with a key made at start (a restart invalidates them), carry
// kube-apiserver's claims, and stop working when they expire or when the
// ServiceAccount is deleted (its UID is checked). Bound object references
// are recorded, not checked; legacy token Secrets are not populated.

const (
	saIssuer          = "https://kubernetes.default.svc.cluster.local"
	saDefaultExpiry   = int64(3600)
	saMinExpiry       = int64(600)
	saMaxExpiry       = int64(1 << 32)
	saTokenHeaderJSON = `{"alg":"HS256","typ":"JWT"}`
)

type saClaims struct {
	Issuer     string   `json:"iss"`
	Subject    string   `json:"sub"`
	Audience   []string `json:"aud"`
	Expiry     int64    `json:"exp"`
	IssuedAt   int64    `json:"iat"`
	NotBefore  int64    `json:"nbf"`
	ID         string   `json:"jti,omitempty"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

type saTokens struct {
	key []byte
	// getSA reads a ServiceAccount from storage (set once the storage exists).
	getSA func(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
}

func newSATokens() (*saTokens, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &saTokens{key: key}, nil
}

var b64 = base64.RawURLEncoding

func (t *saTokens) sign(c *saClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	unsigned := b64.EncodeToString([]byte(saTokenHeaderJSON)) + "." + b64.EncodeToString(payload)
	mac := hmac.New(sha256.New, t.key)
	mac.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(mac.Sum(nil)), nil
}

var _ authenticator.Token = &saTokens{}

// AuthenticateToken: not a token of ours → (nil, false, nil), so the other
// token authenticators get their turn; ours but invalid → an error (401).
func (t *saTokens) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false, nil
	}
	header, err := b64.DecodeString(parts[0])
	if err != nil || string(header) != saTokenHeaderJSON {
		return nil, false, nil
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, false, nil
	}
	mac := hmac.New(sha256.New, t.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if subtle.ConstantTimeCompare(sig, mac.Sum(nil)) != 1 {
		return nil, false, nil
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, false, fmt.Errorf("service account token: %w", err)
	}
	var c saClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, false, fmt.Errorf("service account token: %w", err)
	}
	now := time.Now().Unix()
	if now >= c.Expiry {
		return nil, false, fmt.Errorf("service account token has expired")
	}
	auds := authenticator.Audiences(c.Audience)
	if want, ok := authenticator.AudiencesFrom(ctx); ok && len(want) > 0 {
		auds = want.Intersect(auds)
		if len(auds) == 0 {
			return nil, false, fmt.Errorf("service account token has no audience of this server")
		}
	}
	ns, name := c.Kubernetes.Namespace, c.Kubernetes.ServiceAccount.Name
	if t.getSA == nil {
		return nil, false, fmt.Errorf("service account tokens are not accepted yet")
	}
	sa, err := t.getSA(ctx, ns, name)
	if err != nil {
		return nil, false, fmt.Errorf("service account %s/%s of the token: %w", ns, name, err)
	}
	if string(sa.UID) != c.Kubernetes.ServiceAccount.UID {
		return nil, false, fmt.Errorf("service account %s/%s was recreated: the token is no longer valid", ns, name)
	}
	return &authenticator.Response{
		User:      serviceaccount.UserInfo(ns, name, string(sa.UID)),
		Audiences: auds,
	}, true, nil
}

// tokenREST serves serviceaccounts/token.
type tokenREST struct {
	tokens *saTokens
	sas    *REST
}

var _ rest.NamedCreater = &tokenREST{}
var _ rest.GroupVersionKindProvider = &tokenREST{}

func (r *tokenREST) New() runtime.Object { return &authenticationv1.TokenRequest{} }
func (r *tokenREST) Destroy()            {}
func (r *tokenREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
}

func (r *tokenREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*authenticationv1.TokenRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a TokenRequest: %T", obj))
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	saObj, err := r.sas.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sa := saObj.(*corev1.ServiceAccount)
	exp := saDefaultExpiry
	if req.Spec.ExpirationSeconds != nil {
		exp = *req.Spec.ExpirationSeconds
	}
	if exp < saMinExpiry || exp > saMaxExpiry {
		return nil, apierrors.NewInvalid(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest").GroupKind(), name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "expirationSeconds"), exp, "may not specify a duration less than 10 minutes or longer than 2^32 seconds")})
	}
	auds := req.Spec.Audiences
	if len(auds) == 0 {
		auds = []string{saIssuer}
	}
	now := time.Now()
	c := &saClaims{Issuer: saIssuer, Subject: serviceaccount.MakeUsername(sa.Namespace, sa.Name), Audience: auds,
		Expiry: now.Unix() + exp, IssuedAt: now.Unix(), NotBefore: now.Unix()}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	c.ID = fmt.Sprintf("%x", id)
	c.Kubernetes.Namespace = sa.Namespace
	c.Kubernetes.ServiceAccount.Name = sa.Name
	c.Kubernetes.ServiceAccount.UID = string(sa.UID)
	token, err := r.tokens.sign(c)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out := req.DeepCopy()
	out.Name, out.Namespace = sa.Name, sa.Namespace
	out.CreationTimestamp = metav1.NewTime(now)
	out.Spec.Audiences = auds
	out.Spec.ExpirationSeconds = &exp
	out.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(time.Unix(c.Expiry, 0))}
	return out, nil
}

// getServiceAccount reads one ServiceAccount straight from storage (not from
// a cache: a token made right after the ServiceAccount works at once).
func getServiceAccount(sas *REST) func(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	return func(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
		obj, err := sas.Get(genericapirequest.WithNamespace(ctx, namespace), name, &metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return obj.(*corev1.ServiceAccount), nil
	}
}
