package main

import (
	"context"
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// The built-in kinds are served straight from their k8s.io/api (external) Go
// types: each type is registered both under its version and under the
// group's internal version, so "conversion" to the hub is a no-op. The only
// real conversion is events.k8s.io/v1 <-> core/v1 Event (events.go), which
// share one storage as in kube-apiserver. There is no defaulting beyond what
// the strategies below do.
var (
	builtinScheme = runtime.NewScheme()
	builtinCodecs = serializer.NewCodecFactory(builtinScheme)
)

// addKnownTypes registers objs in gv (and its internal version) of the
// scheme every storage-only kind is served from.
func addKnownTypes(gv schema.GroupVersion, objs ...runtime.Object) {
	builtinScheme.AddKnownTypes(gv, objs...)
	builtinScheme.AddKnownTypes(internal(gv.Group), objs...)
	metav1.AddToGroupVersion(builtinScheme, gv)
}

func internal(group string) schema.GroupVersion {
	return schema.GroupVersion{Group: group, Version: runtime.APIVersionInternal}
}

func init() {
	add := addKnownTypes
	add(corev1.SchemeGroupVersion,
		&corev1.Namespace{}, &corev1.NamespaceList{},
		&corev1.Secret{}, &corev1.SecretList{},
		&corev1.ConfigMap{}, &corev1.ConfigMapList{},
		&corev1.ServiceAccount{}, &corev1.ServiceAccountList{},
		&corev1.Service{}, &corev1.ServiceList{},
		&corev1.Event{}, &corev1.EventList{},
	)
	add(appsv1.SchemeGroupVersion, &appsv1.Deployment{}, &appsv1.DeploymentList{})
	add(autoscalingv1.SchemeGroupVersion, &autoscalingv1.Scale{})
	add(coordinationv1.SchemeGroupVersion, &coordinationv1.Lease{}, &coordinationv1.LeaseList{})
	add(rbacv1.SchemeGroupVersion,
		&rbacv1.Role{}, &rbacv1.RoleList{},
		&rbacv1.RoleBinding{}, &rbacv1.RoleBindingList{},
		&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleList{},
		&rbacv1.ClusterRoleBinding{}, &rbacv1.ClusterRoleBindingList{},
	)
	add(authorizationv1.SchemeGroupVersion,
		&authorizationv1.SelfSubjectAccessReview{}, &authorizationv1.SelfSubjectRulesReview{},
		&authorizationv1.SubjectAccessReview{}, &authorizationv1.LocalSubjectAccessReview{})
	add(authenticationv1.SchemeGroupVersion, &authenticationv1.SelfSubjectReview{}, &authenticationv1.TokenRequest{})

	// events.k8s.io/v1 is a view of the core/v1 events (the hub type is corev1.Event).
	builtinScheme.AddKnownTypes(eventsv1.SchemeGroupVersion, &eventsv1.Event{}, &eventsv1.EventList{})
	builtinScheme.AddKnownTypes(internal(eventsv1.GroupName), &corev1.Event{}, &corev1.EventList{})
	metav1.AddToGroupVersion(builtinScheme, eventsv1.SchemeGroupVersion)
	if err := addEventConversions(builtinScheme); err != nil {
		panic(err)
	}
	if err := addFieldLabelConversions(builtinScheme); err != nil {
		panic(err)
	}

	// autoscaling/v2 serves HorizontalPodAutoscalers (stored.go); v1 is only deployments/scale's Scale.
	if err := builtinScheme.SetVersionPriority(autoscalingv2.SchemeGroupVersion, autoscalingv1.SchemeGroupVersion); err != nil {
		panic(err)
	}
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, appsv1.SchemeGroupVersion,
		coordinationv1.SchemeGroupVersion, rbacv1.SchemeGroupVersion,
		eventsv1.SchemeGroupVersion, authorizationv1.SchemeGroupVersion, authenticationv1.SchemeGroupVersion} {
		if err := builtinScheme.SetVersionPriority(gv); err != nil {
			panic(err)
		}
	}
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	builtinScheme.AddUnversionedTypes(unversioned,
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// strategy is the create/update/delete behaviour of one stored kind.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator

	namespaced bool
	nameFn     apimachineryvalidation.ValidateNameFunc
	// hasStatus: status is ignored on create and on updates of the main
	// resource; the status subresource changes only status.
	hasStatus bool
	// bumpGeneration: metadata.generation starts at 1 and grows on spec changes.
	bumpGeneration bool
	prepare        func(obj, old runtime.Object) // old is nil on create
	validate       func(obj, old runtime.Object) field.ErrorList
	resetFields    map[fieldpath.APIVersion]*fieldpath.Set
}

var _ rest.RESTCreateStrategy = &strategy{}
var _ rest.RESTUpdateStrategy = &strategy{}
var _ rest.ResetFieldsStrategy = &strategy{}

func (s *strategy) NamespaceScoped() bool           { return s.namespaced }
func (s *strategy) AllowCreateOnUpdate() bool       { return false }
func (s *strategy) AllowUnconditionalUpdate() bool  { return true }
func (s *strategy) Canonicalize(obj runtime.Object) {}
func (s *strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return nil
}
func (s *strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}
func (s *strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set { return s.resetFields }

func (s *strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	if s.hasStatus {
		setField(obj, "Status", reflect.Zero(fieldOf(obj, "Status").Type()))
	}
	if s.bumpGeneration {
		metaOf(obj).SetGeneration(1)
	}
	if s.prepare != nil {
		s.prepare(obj, nil)
	}
}

func (s *strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	if s.hasStatus {
		setField(obj, "Status", fieldOf(old, "Status"))
	}
	if s.bumpGeneration {
		gen := metaOf(old).GetGeneration()
		if !equality.Semantic.DeepEqual(fieldOf(obj, "Spec").Interface(), fieldOf(old, "Spec").Interface()) {
			gen++
		}
		metaOf(obj).SetGeneration(gen)
	}
	if s.prepare != nil {
		s.prepare(obj, old)
	}
}

func (s *strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	errs := apimachineryvalidation.ValidateObjectMetaAccessor(metaOf(obj), s.namespaced, s.nameFn, field.NewPath("metadata"))
	if s.validate != nil {
		errs = append(errs, s.validate(obj, nil)...)
	}
	return errs
}

func (s *strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(metaOf(obj), metaOf(old), field.NewPath("metadata"))
	if s.validate != nil {
		errs = append(errs, s.validate(obj, old)...)
	}
	return errs
}

// statusStrategy updates only status (the rest is taken from the stored object).
type statusStrategy struct {
	*strategy
	resetFields map[fieldpath.APIVersion]*fieldpath.Set
}

func (s *statusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	setField(obj, "Spec", fieldOf(old, "Spec"))
	m, om := metaOf(obj), metaOf(old)
	m.SetLabels(om.GetLabels())
	m.SetAnnotations(om.GetAnnotations())
	m.SetFinalizers(om.GetFinalizers())
	m.SetOwnerReferences(om.GetOwnerReferences())
	m.SetGeneration(om.GetGeneration())
}

func (s *statusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return apimachineryvalidation.ValidateObjectMetaAccessorUpdate(metaOf(obj), metaOf(old), field.NewPath("metadata"))
}

func (s *statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return s.resetFields
}

func metaOf(obj runtime.Object) metav1.Object { return obj.(metav1.Object) }

func fieldOf(obj runtime.Object, name string) reflect.Value {
	return reflect.ValueOf(obj).Elem().FieldByName(name)
}

func setField(obj runtime.Object, name string, v reflect.Value) {
	reflect.ValueOf(obj).Elem().FieldByName(name).Set(v)
}

func resetPaths(gv schema.GroupVersion, paths ...[]interface{}) map[fieldpath.APIVersion]*fieldpath.Set {
	set := fieldpath.NewSet()
	for _, p := range paths {
		set.Insert(fieldpath.MakePathOrDie(p...))
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(gv.String()): set}
}

// REST is a stored resource plus the discovery details kubectl relies on.
type REST struct {
	*genericregistry.Store
	shortNames []string
	categories []string
}

func (r *REST) ShortNames() []string { return r.shortNames }
func (r *REST) Categories() []string { return r.categories }

// StatusREST serves the status subresource of a REST.
type StatusREST struct {
	store *genericregistry.Store
}

func (r *StatusREST) New() runtime.Object { return r.store.New() }
func (r *StatusREST) Destroy()            {}
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

type kind struct {
	gr         schema.GroupResource
	singular   string
	newObj     func() runtime.Object
	newList    func() runtime.Object
	strategy   *strategy
	attrs      storage.AttrFunc
	table      rest.TableConvertor
	ttlSeconds uint64
	shortNames []string
	categories []string
}

func newREST(getter generic.RESTOptionsGetter, k kind) (*REST, error) {
	k.strategy.ObjectTyper = builtinScheme
	k.strategy.NameGenerator = names.SimpleNameGenerator
	if k.strategy.nameFn == nil {
		k.strategy.nameFn = apimachineryvalidation.NameIsDNSSubdomain
	}
	if k.table == nil {
		k.table = rest.NewDefaultTableConvertor(k.gr)
	}
	store := &genericregistry.Store{
		NewFunc:                   k.newObj,
		NewListFunc:               k.newList,
		DefaultQualifiedResource:  k.gr,
		SingularQualifiedResource: schema.GroupResource{Group: k.gr.Group, Resource: k.singular},
		CreateStrategy:            k.strategy,
		UpdateStrategy:            k.strategy,
		DeleteStrategy:            k.strategy,
		ResetFieldsStrategy:       k.strategy,
		TableConvertor:            k.table,
	}
	if k.ttlSeconds > 0 {
		ttl := k.ttlSeconds
		store.TTLFunc = func(obj runtime.Object, existing uint64, update bool) (uint64, error) { return ttl, nil }
	}
	opts := &generic.StoreOptions{RESTOptions: getter, AttrFunc: k.attrs}
	if err := store.CompleteWithOptions(opts); err != nil {
		return nil, fmt.Errorf("storage for %s: %w", k.gr, err)
	}
	return &REST{Store: store, shortNames: k.shortNames, categories: k.categories}, nil
}

func newStatusREST(r *REST, resetFields map[fieldpath.APIVersion]*fieldpath.Set) *StatusREST {
	statusStore := *r.Store
	st := &statusStrategy{strategy: r.Store.UpdateStrategy.(*strategy), resetFields: resetFields}
	statusStore.UpdateStrategy = st
	statusStore.ResetFieldsStrategy = st
	return &StatusREST{store: &statusStore}
}

// restOptionsGetter stores every built-in group as JSON of its external
// version under <prefix>/<group>/<resource>.
func restOptionsGetter(etcdOpts *genericoptions.EtcdOptions, c *genericapiserver.RecommendedConfig, gv schema.GroupVersion) generic.RESTOptionsGetter {
	cfg := etcdOpts.StorageConfig
	cfg.Codec = builtinCodecs.LegacyCodec(gv)
	cfg.EncodeVersioner = gv
	cfg.StorageObjectCountTracker = c.StorageObjectCountTracker
	return etcdOpts.CreateRESTOptionsGetter(&genericoptions.SimpleStorageFactory{StorageConfig: cfg}, c.ResourceTransformers)
}

func installBuiltins(server *genericapiserver.GenericAPIServer, etcdOpts *genericoptions.EtcdOptions, c *genericapiserver.RecommendedConfig,
	authz *rbacAuthorizer, saTokens *saTokens) (*namespaceREST, error) {
	core := restOptionsGetter(etcdOpts, c, corev1.SchemeGroupVersion)
	apps := restOptionsGetter(etcdOpts, c, appsv1.SchemeGroupVersion)
	coordination := restOptionsGetter(etcdOpts, c, coordinationv1.SchemeGroupVersion)
	rbac := restOptionsGetter(etcdOpts, c, rbacv1.SchemeGroupVersion)

	// --- core/v1 -------------------------------------------------------
	namespaces, err := newREST(core, kind{
		gr: corev1.Resource("namespaces"), singular: "namespace",
		newObj: func() runtime.Object { return &corev1.Namespace{} }, newList: func() runtime.Object { return &corev1.NamespaceList{} },
		strategy: &strategy{nameFn: apimachineryvalidation.ValidateNamespaceName, hasStatus: true,
			prepare: func(obj, old runtime.Object) {
				ns := obj.(*corev1.Namespace)
				if old == nil {
					// Deletion empties the namespace first (namespace.go).
					if !hasFinalizer(ns) {
						ns.Spec.Finalizers = append(ns.Spec.Finalizers, namespaceFinalizer)
					}
				} else {
					// spec.finalizers changes only through finalization.
					ns.Spec = old.(*corev1.Namespace).Spec
				}
				if ns.Status.Phase == "" {
					ns.Status.Phase = corev1.NamespaceActive
				}
				if ns.Labels == nil {
					ns.Labels = map[string]string{}
				}
				ns.Labels[corev1.LabelMetadataName] = ns.Name
			},
			resetFields: resetPaths(corev1.SchemeGroupVersion, []interface{}{"status"})},
		attrs:      namespaceAttrs,
		table:      namespaceTable,
		shortNames: []string{"ns"},
	})
	if err != nil {
		return nil, err
	}
	secrets, err := newREST(core, kind{
		gr: corev1.Resource("secrets"), singular: "secret",
		newObj: func() runtime.Object { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} },
		strategy: &strategy{namespaced: true, prepare: prepareSecret, validate: validateSecret},
		attrs:    secretAttrs,
		table:    secretTable,
	})
	if err != nil {
		return nil, err
	}
	configmaps, err := newREST(core, kind{
		gr: corev1.Resource("configmaps"), singular: "configmap",
		newObj: func() runtime.Object { return &corev1.ConfigMap{} }, newList: func() runtime.Object { return &corev1.ConfigMapList{} },
		strategy:   &strategy{namespaced: true, validate: validateConfigMap},
		table:      configMapTable,
		shortNames: []string{"cm"},
	})
	if err != nil {
		return nil, err
	}
	serviceaccounts, err := newREST(core, kind{
		gr: corev1.Resource("serviceaccounts"), singular: "serviceaccount",
		newObj: func() runtime.Object { return &corev1.ServiceAccount{} }, newList: func() runtime.Object { return &corev1.ServiceAccountList{} },
		strategy:   &strategy{namespaced: true},
		table:      serviceAccountTable,
		shortNames: []string{"sa"},
	})
	if err != nil {
		return nil, err
	}
	// Services are stored only: no cluster IP is allocated, no endpoints.
	services, err := newREST(core, kind{
		gr: corev1.Resource("services"), singular: "service",
		newObj: func() runtime.Object { return &corev1.Service{} }, newList: func() runtime.Object { return &corev1.ServiceList{} },
		strategy:   &strategy{namespaced: true},
		shortNames: []string{"svc"},
		categories: []string{"all"},
	})
	if err != nil {
		return nil, err
	}
	eventKind := kind{
		gr: corev1.Resource("events"), singular: "event",
		newObj: func() runtime.Object { return &corev1.Event{} }, newList: func() runtime.Object { return &corev1.EventList{} },
		strategy:   &strategy{namespaced: true},
		attrs:      eventAttrs,
		table:      eventTable,
		ttlSeconds: 3600, // kube-apiserver's default --event-ttl
		shortNames: []string{"ev"},
	}
	events, err := newREST(core, eventKind)
	if err != nil {
		return nil, err
	}
	saTokens.getSA = getServiceAccount(serviceaccounts)
	nsREST := &namespaceREST{REST: namespaces}
	coreInfo := genericapiserver.NewDefaultAPIGroupInfo("", builtinScheme, metav1.ParameterCodec, builtinCodecs)
	coreInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{
		"namespaces":            nsREST,
		"namespaces/status":     newStatusREST(namespaces, resetPaths(corev1.SchemeGroupVersion, []interface{}{"spec"})),
		"secrets":               secrets,
		"configmaps":            configmaps,
		"serviceaccounts":       serviceaccounts,
		"serviceaccounts/token": &tokenREST{tokens: saTokens, sas: serviceaccounts},
		"services":              services,
		"events":                events,
	}
	if err := addStored(core, corev1.SchemeGroupVersion, storedCore, coreInfo.VersionedResourcesStorageMap["v1"]); err != nil {
		return nil, err
	}
	if err := server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &coreInfo); err != nil {
		return nil, fmt.Errorf("installing core/v1: %w", err)
	}

	// --- named groups ---------------------------------------------------
	deployments, err := newREST(apps, kind{
		gr: appsv1.Resource("deployments"), singular: "deployment",
		newObj: func() runtime.Object { return &appsv1.Deployment{} }, newList: func() runtime.Object { return &appsv1.DeploymentList{} },
		strategy: &strategy{namespaced: true, hasStatus: true, bumpGeneration: true,
			prepare: prepareDeployment, validate: validateDeployment,
			resetFields: resetPaths(appsv1.SchemeGroupVersion, []interface{}{"status"})},
		table:      deploymentTable,
		shortNames: []string{"deploy"},
		categories: []string{"all"},
	})
	if err != nil {
		return nil, err
	}
	appsInfo := genericapiserver.NewDefaultAPIGroupInfo(appsv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	appsInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{
		"deployments":        deployments,
		"deployments/status": newStatusREST(deployments, resetPaths(appsv1.SchemeGroupVersion, []interface{}{"spec"}, []interface{}{"metadata", "labels"})),
		"deployments/scale":  &scaleREST{store: deployments.Store},
	}
	if err := addStored(apps, appsv1.SchemeGroupVersion, storedApps, appsInfo.VersionedResourcesStorageMap["v1"]); err != nil {
		return nil, err
	}

	leases, err := newREST(coordination, kind{
		gr: coordinationv1.Resource("leases"), singular: "lease",
		newObj: func() runtime.Object { return &coordinationv1.Lease{} }, newList: func() runtime.Object { return &coordinationv1.LeaseList{} },
		strategy: &strategy{namespaced: true},
		table:    leaseTable,
	})
	if err != nil {
		return nil, err
	}
	coordinationInfo := genericapiserver.NewDefaultAPIGroupInfo(coordinationv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	coordinationInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{"leases": leases}

	// events.k8s.io/v1 shares the core/v1 events storage (same etcd keys).
	eventKind.shortNames = []string{"ev"}
	eventKind.strategy = &strategy{namespaced: true}
	eventsView, err := newREST(core, eventKind)
	if err != nil {
		return nil, err
	}
	eventsInfo := genericapiserver.NewDefaultAPIGroupInfo(eventsv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	eventsInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{"events": eventsView}

	rbacStorage := map[string]rest.Storage{}
	for _, k := range []kind{
		{gr: rbacv1.Resource("roles"), singular: "role", strategy: &strategy{namespaced: true},
			newObj: func() runtime.Object { return &rbacv1.Role{} }, newList: func() runtime.Object { return &rbacv1.RoleList{} }},
		{gr: rbacv1.Resource("rolebindings"), singular: "rolebinding", strategy: &strategy{namespaced: true},
			newObj: func() runtime.Object { return &rbacv1.RoleBinding{} }, newList: func() runtime.Object { return &rbacv1.RoleBindingList{} }},
		{gr: rbacv1.Resource("clusterroles"), singular: "clusterrole", strategy: &strategy{},
			newObj: func() runtime.Object { return &rbacv1.ClusterRole{} }, newList: func() runtime.Object { return &rbacv1.ClusterRoleList{} }},
		{gr: rbacv1.Resource("clusterrolebindings"), singular: "clusterrolebinding", strategy: &strategy{},
			newObj: func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, newList: func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} }},
	} {
		k.strategy.nameFn = path.ValidatePathSegmentName // RBAC names may contain ':'
		r, err := newREST(rbac, k)
		if err != nil {
			return nil, err
		}
		rbacStorage[k.gr.Resource] = r
	}
	rbacInfo := genericapiserver.NewDefaultAPIGroupInfo(rbacv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	rbacInfo.VersionedResourcesStorageMap["v1"] = rbacStorage

	authorizationInfo := genericapiserver.NewDefaultAPIGroupInfo(authorizationv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	authorizationInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{
		"selfsubjectaccessreviews":  &selfSubjectAccessReviewREST{authz: authz},
		"selfsubjectrulesreviews":   &selfSubjectRulesReviewREST{rules: authz},
		"subjectaccessreviews":      &subjectAccessReviewREST{authz: authz},
		"localsubjectaccessreviews": &subjectAccessReviewREST{authz: authz, namespaced: true},
	}
	authenticationInfo := genericapiserver.NewDefaultAPIGroupInfo(authenticationv1.GroupName, builtinScheme, metav1.ParameterCodec, builtinCodecs)
	authenticationInfo.VersionedResourcesStorageMap["v1"] = map[string]rest.Storage{
		"selfsubjectreviews": &selfSubjectReviewREST{},
	}

	stored, err := storedGroupInfos(etcdOpts, c)
	if err != nil {
		return nil, err
	}
	groups := append([]*genericapiserver.APIGroupInfo{&appsInfo, &coordinationInfo, &eventsInfo, &rbacInfo, &authorizationInfo, &authenticationInfo}, stored...)
	if err := server.InstallAPIGroups(groups...); err != nil {
		return nil, fmt.Errorf("installing built-in groups: %w", err)
	}
	return nsREST, nil
}

// --- per-kind behaviour --------------------------------------------------

func prepareSecret(obj, old runtime.Object) {
	s := obj.(*corev1.Secret)
	if s.Type == "" {
		if old != nil {
			s.Type = old.(*corev1.Secret).Type
		} else {
			s.Type = corev1.SecretTypeOpaque
		}
	}
	// stringData is write-only: merged into data, as kube-apiserver's conversion does.
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}

func validateSecret(obj, old runtime.Object) field.ErrorList {
	var errs field.ErrorList
	s := obj.(*corev1.Secret)
	for k := range s.Data {
		for _, msg := range validateConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
		}
	}
	if old != nil {
		o := old.(*corev1.Secret)
		if s.Type != o.Type {
			errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
		}
		if o.Immutable != nil && *o.Immutable {
			if s.Immutable == nil || !*s.Immutable {
				errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
			}
			if !equality.Semantic.DeepEqual(s.Data, o.Data) {
				errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
			}
		}
	}
	return errs
}

func validateConfigMap(obj, old runtime.Object) field.ErrorList {
	var errs field.ErrorList
	c := obj.(*corev1.ConfigMap)
	for k := range c.Data {
		for _, msg := range validateConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
		}
		if _, dup := c.BinaryData[k]; dup {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
		}
	}
	for k := range c.BinaryData {
		for _, msg := range validateConfigMapKey(k) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(k), k, msg))
		}
	}
	if old != nil {
		o := old.(*corev1.ConfigMap)
		if o.Immutable != nil && *o.Immutable {
			if c.Immutable == nil || !*c.Immutable {
				errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
			}
			if !equality.Semantic.DeepEqual(c.Data, o.Data) || !equality.Semantic.DeepEqual(c.BinaryData, o.BinaryData) {
				errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
			}
		}
	}
	return errs
}

func prepareDeployment(obj, old runtime.Object) {
	d := obj.(*appsv1.Deployment)
	// The one default controllers and kubectl rely on (kube-apiserver sets many more).
	if d.Spec.Replicas == nil {
		one := int32(1)
		d.Spec.Replicas = &one
	}
}

func validateDeployment(obj, old runtime.Object) field.ErrorList {
	var errs field.ErrorList
	d := obj.(*appsv1.Deployment)
	specPath := field.NewPath("spec")
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		errs = append(errs, field.Invalid(specPath.Child("replicas"), *d.Spec.Replicas, "must be greater than or equal to 0"))
	}
	if d.Spec.Selector == nil {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(specPath.Child("selector"), d.Spec.Selector, err.Error()))
		case sel.Empty():
			errs = append(errs, field.Invalid(specPath.Child("selector"), d.Spec.Selector, "empty selector is invalid for deployment"))
		case !sel.Matches(labels.Set(d.Spec.Template.Labels)):
			errs = append(errs, field.Invalid(specPath.Child("template", "metadata", "labels"), d.Spec.Template.Labels, "`selector` does not match template `labels`"))
		}
		if old != nil && !equality.Semantic.DeepEqual(d.Spec.Selector, old.(*appsv1.Deployment).Spec.Selector) {
			errs = append(errs, field.Invalid(specPath.Child("selector"), d.Spec.Selector, "field is immutable"))
		}
	}
	containers := specPath.Child("template", "spec", "containers")
	if len(d.Spec.Template.Spec.Containers) == 0 {
		errs = append(errs, field.Required(containers, ""))
	}
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "" {
			errs = append(errs, field.Required(containers.Index(i).Child("name"), ""))
		}
		if c.Image == "" {
			errs = append(errs, field.Required(containers.Index(i).Child("image"), ""))
		}
	}
	return errs
}

// validateConfigMapKey: keys of configmaps and secrets.
func validateConfigMapKey(k string) []string {
	return utilvalidation.IsConfigMapKey(k)
}

// --- field selectors ------------------------------------------------------

func namespaceAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	ns := obj.(*corev1.Namespace)
	return labels.Set(ns.Labels), fields.Set{"metadata.name": ns.Name, "status.phase": string(ns.Status.Phase)}, nil
}

func secretAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	s := obj.(*corev1.Secret)
	return labels.Set(s.Labels), fields.Set{"metadata.name": s.Name, "metadata.namespace": s.Namespace, "type": string(s.Type)}, nil
}

func eventAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	e := obj.(*corev1.Event)
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	return labels.Set(e.Labels), fields.Set{
		"metadata.name":                  e.Name,
		"metadata.namespace":             e.Namespace,
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
	}, nil
}

func addFieldLabelConversions(s *runtime.Scheme) error {
	allow := func(gvk schema.GroupVersionKind, labels map[string]string) error {
		return s.AddFieldLabelConversionFunc(gvk, func(label, value string) (string, string, error) {
			if l, ok := labels[label]; ok {
				return l, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		})
	}
	meta := func(extra ...string) map[string]string {
		m := map[string]string{"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
		for _, e := range extra {
			m[e] = e
		}
		return m
	}
	if err := allow(corev1.SchemeGroupVersion.WithKind("Namespace"), meta("status.phase")); err != nil {
		return err
	}
	if err := allow(corev1.SchemeGroupVersion.WithKind("Secret"), meta("type")); err != nil {
		return err
	}
	coreEvent := meta("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
		"involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
		"reason", "reportingComponent", "source", "type")
	if err := allow(corev1.SchemeGroupVersion.WithKind("Event"), coreEvent); err != nil {
		return err
	}
	eventsEvent := meta("reason", "type")
	for _, f := range []string{"kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"} {
		eventsEvent["regarding."+f] = "involvedObject." + f
	}
	eventsEvent["reportingController"] = "reportingComponent"
	return allow(eventsv1.SchemeGroupVersion.WithKind("Event"), eventsEvent)
}
