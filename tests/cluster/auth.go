package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/util/webhook"
)

// newAuthenticator accepts x509 client certificates signed by the CA in
// caFile (user = CN, groups = O) and, if tokenFile is set, the bearer tokens
// listed there. Requests without any credentials are anonymous; the
// authorizer lets them read only the health and version endpoints.
func newAuthenticator(caFile, tokenFile string) (authenticator.Request, dynamiccertificates.CAContentProvider, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA: %w", err)
	}
	clientCA, err := dynamiccertificates.NewStaticCAContent("client-ca", caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA %s: %w", caFile, err)
	}
	authenticators := []authenticator.Request{
		x509request.NewDynamic(clientCA.VerifyOptions, x509request.CommonNameUserConversion),
	}
	if tokenFile != "" {
		tokens, err := tokenfile.NewCSV(tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("token file: %w", err)
		}
		authenticators = append(authenticators, bearertoken.New(tokens))
	}
	authenticated := group.NewAuthenticatedGroupAdder(union.New(authenticators...))
	return union.New(authenticated, anonymousWithoutCredentials{anonymous.NewAuthenticator(nil)}), clientCA, nil
}

// anonymousWithoutCredentials makes a request anonymous only when it carries
// no credentials, so a wrong token or certificate gets 401, not 403.
type anonymousWithoutCredentials struct{ delegate authenticator.Request }

func (a anonymousWithoutCredentials) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if req.Header.Get("Authorization") != "" || (req.TLS != nil && len(req.TLS.PeerCertificates) > 0) {
		return nil, false, nil
	}
	return a.delegate.AuthenticateRequest(req)
}

var publicPaths = map[string]bool{
	"/healthz": true, "/livez": true, "/readyz": true, "/version": true, "/version/": true,
}

// newAuthorizer allows everything to every authenticated user. RBAC objects
// are stored by this server but never evaluated.
func newAuthorizer() authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		u := a.GetUser()
		if u == nil {
			return authorizer.DecisionNoOpinion, "no user", nil
		}
		for _, g := range u.GetGroups() {
			if g == user.AllAuthenticated || g == user.SystemPrivilegedGroup {
				return authorizer.DecisionAllow, "", nil
			}
		}
		if !a.IsResourceRequest() && a.GetVerb() == "get" && publicPaths[a.GetPath()] {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "anonymous requests may only read /healthz, /livez, /readyz and /version", nil
	})
}

// noServiceResolver: there are no Services here, so CRD conversion webhooks
// that name a service cannot be reached (webhooks with a URL still work).
type noServiceResolver struct{}

func (noServiceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return nil, fmt.Errorf("service %s/%s: services are not served by the driftless test API server", namespace, name)
}

var noAuthResolverWrapper webhook.AuthenticationInfoResolverWrapper = func(r webhook.AuthenticationInfoResolver) webhook.AuthenticationInfoResolver {
	return r
}
