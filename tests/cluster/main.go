// Command driftless-apiserver is a stand-alone Kubernetes API server for
// driftless' integration tests. It links the Kubernetes API-server libraries
// that Debian packages (k8s.io/apiextensions-apiserver, k8s.io/apiserver,
// k8s.io/client-go, k8s.io/api) and adds what those libraries leave to
// kube-apiserver:
//
//   - authentication: x509 client certificates, ServiceAccount tokens from
//     the TokenRequest subresource (plus an optional static token file) and
//     impersonation; authorization: RBAC from the stored Roles, ClusterRoles
//     and their bindings (system:masters may do everything);
//   - discovery for /api and /apis (legacy and aggregated), including the
//     groups of CustomResourceDefinitions;
//   - storage-only REST endpoints for the built-in kinds a controller, kubectl
//     and real repositories touch (namespaces, secrets, configmaps,
//     serviceaccounts, services, events in core/v1 and events.k8s.io/v1,
//     leases, deployments with status and scale, RBAC; workloads, batch,
//     networking, policy, autoscaling/v2, storage, scheduling and admission
//     configuration in stored.go), with OpenAPI models so server-side apply
//     works on them; no controller acts on any of them;
//   - the namespaces default, kube-system, kube-public and kube-node-lease.
//
// It is built offline in GOPATH mode by tests/cluster/build; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	apiextensionsoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	apiextensionsopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/dynamic"
	clientgoinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	netutils "k8s.io/utils/net"

	builtinopenapi "driftless.dev/cluster/openapi"
)

type options struct {
	bindAddress string
	port        int
	etcdServers string
	etcdPrefix  string
	certDir     string
	tokenFile   string
}

func main() {
	o := options{}
	fs := flag.CommandLine
	fs.StringVar(&o.bindAddress, "bind-address", "127.0.0.1", "address to serve HTTPS on")
	fs.IntVar(&o.port, "secure-port", 16443, "port to serve HTTPS on")
	fs.StringVar(&o.etcdServers, "etcd-servers", "http://127.0.0.1:16379", "etcd client URL")
	fs.StringVar(&o.etcdPrefix, "etcd-prefix", "/registry", "key prefix in etcd")
	fs.StringVar(&o.certDir, "cert-dir", "", "directory with ca.crt (client CA), apiserver.crt and apiserver.key (serving pair)")
	fs.StringVar(&o.tokenFile, "token-auth-file", "", "optional static token file (token,user,uid,\"group1,group2\")")
	klog.InitFlags(fs)
	flag.Parse()
	if o.certDir == "" {
		fmt.Fprintln(os.Stderr, "driftless-apiserver: --cert-dir is required")
		os.Exit(2)
	}

	ctx := genericapiserver.SetupSignalContext()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "driftless-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	// Server run options: version, request limits, feature gates.
	runOpts := genericoptions.NewServerRunOptions()
	if err := runOpts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := runOpts.Complete(); err != nil {
		return err
	}
	serverConfig := genericapiserver.NewRecommendedConfig(apiextensionsapiserver.Codecs)
	if err := runOpts.ApplyTo(&serverConfig.Config); err != nil {
		return err
	}
	bindIP := netutils.ParseIPSloppy(o.bindAddress)
	if bindIP == nil {
		return fmt.Errorf("invalid --bind-address %q", o.bindAddress)
	}
	serverConfig.PublicAddress = bindIP
	serverConfig.ExternalAddress = net.JoinHostPort(o.bindAddress, strconv.Itoa(o.port))
	serverConfig.MergedResourceConfig = apiextensionsapiserver.DefaultAPIResourceConfigSource()

	// HTTPS serving plus the in-memory loopback client the server uses to talk to itself.
	sso := genericoptions.NewSecureServingOptions()
	sso.BindAddress = bindIP
	sso.BindPort = o.port
	sso.ServerCert.CertKey.CertFile = o.certDir + "/apiserver.crt"
	sso.ServerCert.CertKey.KeyFile = o.certDir + "/apiserver.key"
	if err := sso.WithLoopback().ApplyTo(&serverConfig.SecureServing, &serverConfig.LoopbackClientConfig); err != nil {
		return fmt.Errorf("secure serving on %s:%d: %w", o.bindAddress, o.port, err)
	}

	// etcd. Garbage collection is off: no controller would ever remove the
	// foregroundDeletion/orphan finalizers it adds.
	etcdOpts := genericoptions.NewEtcdOptions(storagebackend.NewDefaultConfig(o.etcdPrefix,
		apiextensionsapiserver.Codecs.LegacyCodec(apiextensionsv1.SchemeGroupVersion)))
	etcdOpts.StorageConfig.Transport.ServerList = []string{o.etcdServers}
	etcdOpts.EnableGarbageCollection = false
	etcdOpts.StorageConfig.StorageObjectCountTracker = serverConfig.StorageObjectCountTracker
	if err := etcdOpts.ApplyTo(&serverConfig.Config); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	// Authentication and authorization.
	saTokens, err := newSATokens()
	if err != nil {
		return err
	}
	authn, clientCA, err := newAuthenticator(o.certDir+"/ca.crt", o.tokenFile, saTokens)
	if err != nil {
		return err
	}
	serverConfig.Authentication.Authenticator = authn
	serverConfig.Authentication.APIAudiences = []string{saIssuer}
	if err := serverConfig.Authentication.ApplyClientCert(clientCA, serverConfig.SecureServing); err != nil {
		return err
	}
	// RBAC (rbac.go); its informers are wired below, once there is a client.
	rbacAuthz := &rbacAuthorizer{}
	serverConfig.Authorization.Authorizer = rbacAuthz
	genericapiserver.AuthorizeClientBearerToken(serverConfig.LoopbackClientConfig, &serverConfig.Authentication, &serverConfig.Authorization)

	// Clients and informers on the loopback connection (namespace lifecycle admission needs them).
	kubeClient, err := kubernetes.NewForConfig(serverConfig.LoopbackClientConfig)
	if err != nil {
		return err
	}
	dynamicClient, err := dynamic.NewForConfig(serverConfig.LoopbackClientConfig)
	if err != nil {
		return err
	}
	serverConfig.ClientConfig = serverConfig.LoopbackClientConfig
	serverConfig.SharedInformerFactory = clientgoinformers.NewSharedInformerFactory(kubeClient, 10*time.Minute)
	rbacInformers := serverConfig.SharedInformerFactory.Rbac().V1()
	rbacAuthz.roles = rbacInformers.Roles().Lister()
	rbacAuthz.roleBindings = rbacInformers.RoleBindings().Lister()
	rbacAuthz.clusterRoles = rbacInformers.ClusterRoles().Lister()
	rbacAuthz.clusterRoleBindings = rbacInformers.ClusterRoleBindings().Lister()

	// Admission: namespace lifecycle only. Webhook configurations and
	// admission policies are stored (stored.go) but never called.
	admissionOpts := genericoptions.NewAdmissionOptions()
	admissionOpts.RecommendedPluginOrder = []string{lifecycle.PluginName}
	if err := admissionOpts.ApplyTo(&serverConfig.Config, serverConfig.SharedInformerFactory, kubeClient, dynamicClient,
		utilfeature.DefaultFeatureGate, serverConfig.EffectiveVersion); err != nil {
		return fmt.Errorf("admission: %w", err)
	}

	// OpenAPI (v2 and v3) for the built-in kinds and the apiextensions types;
	// the models also drive server-side apply.
	getDefs := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(mergedDefinitions)
	namer := openapinamer.NewDefinitionNamer(apiextensionsapiserver.Scheme, clientgoscheme.Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(getDefs, namer)
	serverConfig.OpenAPIConfig.Info.Title = "driftless test API server"
	serverConfig.OpenAPIConfig.Info.Version = serverConfig.EffectiveVersion.BinaryVersion().String()
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(getDefs, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "driftless test API server"
	serverConfig.OpenAPIV3Config.Info.Version = serverConfig.EffectiveVersion.BinaryVersion().String()

	// The apiextensions server (CRDs and custom resources) is the one and only
	// server: the built-in groups are installed into it below, so one handler
	// chain, one discovery and one OpenAPI document serve everything.
	crdConfig := &apiextensionsapiserver.Config{
		GenericConfig: serverConfig,
		ExtraConfig: apiextensionsapiserver.ExtraConfig{
			CRDRESTOptionsGetter: apiextensionsoptions.NewCRDRESTOptionsGetter(*etcdOpts, serverConfig.ResourceTransformers, serverConfig.StorageObjectCountTracker),
			MasterCount:          1,
			ServiceResolver:      noServiceResolver{},
			AuthResolverWrapper:  noAuthResolverWrapper,
		},
	}
	completed := crdConfig.Complete()
	// apiextensions turns discovery off because kube-aggregator serves /apis in
	// kube-apiserver. Here this server is the top of the chain: turn it back on.
	completed.GenericConfig.EnableDiscovery = true
	crdServer, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	server := crdServer.GenericAPIServer

	nsREST, err := installBuiltins(server, etcdOpts, serverConfig, rbacAuthz, saTokens)
	if err != nil {
		return err
	}
	namespaceLister := serverConfig.SharedInformerFactory.Core().V1().Namespaces().Lister()
	server.AddPostStartHookOrDie("driftless-namespace-cleanup", func(hc genericapiserver.PostStartHookContext) error {
		go runNamespaceCleanup(hc.Context, nsREST, namespaceLister, kubeClient.Discovery(), dynamicClient)
		return nil
	})
	if err := installCRDGroupDiscovery(server, crdServer.Informers.Apiextensions().V1().CustomResourceDefinitions()); err != nil {
		return err
	}
	server.AddPostStartHookOrDie("driftless-default-namespaces", func(hc genericapiserver.PostStartHookContext) error {
		return createDefaultNamespaces(hc.Context, kubeClient)
	})

	klog.Infof("driftless-apiserver %s serving on https://%s, etcd %s",
		serverConfig.EffectiveVersion.BinaryVersion().String(), serverConfig.ExternalAddress, o.etcdServers)
	return server.PrepareRun().RunWithContext(ctx)
}

// mergedDefinitions joins the generated OpenAPI definitions of the built-in
// kinds (openapi-gen at build time) with those of the apiextensions types.
func mergedDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	defs := apiextensionsopenapi.GetOpenAPIDefinitions(ref)
	for k, v := range builtinopenapi.GetOpenAPIDefinitions(ref) {
		defs[k] = v
	}
	return defs
}

// createDefaultNamespaces creates the namespaces every cluster has. The
// readiness probe (/readyz) reports this hook, so a ready server has them.
func createDefaultNamespaces(ctx context.Context, client kubernetes.Interface) error {
	names := []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				klog.V(2).Infof("creating namespace %s: %v (will retry)", name, err)
				return false, nil
			}
		}
		return true, nil
	})
}

var _ = schema.GroupVersion{}
