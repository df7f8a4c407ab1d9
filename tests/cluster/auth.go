package main

import (
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
	tokenunion "k8s.io/apiserver/pkg/authentication/token/union"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/util/webhook"
)

// newAuthenticator accepts x509 client certificates signed by the CA in
// caFile (user = CN, groups = O), ServiceAccount tokens (serviceaccount.go)
// and, if tokenFile is set, the bearer tokens listed there. Requests without
// any credentials are anonymous; the authorizer (rbac.go) lets them read
// only the health and version endpoints.
func newAuthenticator(caFile, tokenFile string, saTokens authenticator.Token) (authenticator.Request, dynamiccertificates.CAContentProvider, error) {
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
	tokens := []authenticator.Token{saTokens}
	if tokenFile != "" {
		fileTokens, err := tokenfile.NewCSV(tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("token file: %w", err)
		}
		tokens = append(tokens, fileTokens)
	}
	authenticators = append(authenticators, bearertoken.New(tokenunion.New(tokens...)))
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

// noServiceResolver: there are no Services here, so CRD conversion webhooks
// that name a service cannot be reached (webhooks with a URL still work).
type noServiceResolver struct{}

func (noServiceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return nil, fmt.Errorf("service %s/%s: services are not served by the driftless test API server", namespace, name)
}

var noAuthResolverWrapper webhook.AuthenticationInfoResolverWrapper = func(r webhook.AuthenticationInfoResolver) webhook.AuthenticationInfoResolver {
	return r
}
