package main

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
)

// Storage-only built-in kinds: the kinds real repositories hold, stored and
// served (CRUD, watch, server-side apply with their OpenAPI models,
// discovery, `kubectl get` with the default Name/Created At columns, a
// status subresource where the kind has status). No controller acts on any
// of them: no pod is scheduled or run, no Job completes, no quota or limit
// is enforced, no webhook or admission policy is called, no Endpoints are
// filled in. Validation is ObjectMeta's only.

// storedKind is one such kind.
type storedKind struct {
	resource, singular string
	newObj, newList    func() runtime.Object
	namespaced         bool
	// hasStatus: the status subresource; status is kept out of the main resource.
	hasStatus bool
	// bumpGeneration: metadata.generation follows spec changes (workloads).
	bumpGeneration bool
	// pathNames: names may be any path segment (cluster-scoped policy kinds), not only DNS subdomains.
	pathNames  bool
	shortNames []string
	categories []string
}

func init() {
	add := addKnownTypes
	add(corev1.SchemeGroupVersion,
		&corev1.Pod{}, &corev1.PodList{},
		&corev1.PersistentVolumeClaim{}, &corev1.PersistentVolumeClaimList{},
		&corev1.ResourceQuota{}, &corev1.ResourceQuotaList{},
		&corev1.LimitRange{}, &corev1.LimitRangeList{},
		&corev1.Endpoints{}, &corev1.EndpointsList{},
	)
	add(appsv1.SchemeGroupVersion,
		&appsv1.StatefulSet{}, &appsv1.StatefulSetList{},
		&appsv1.DaemonSet{}, &appsv1.DaemonSetList{},
		&appsv1.ReplicaSet{}, &appsv1.ReplicaSetList{},
	)
	add(batchv1.SchemeGroupVersion, &batchv1.Job{}, &batchv1.JobList{}, &batchv1.CronJob{}, &batchv1.CronJobList{})
	add(networkingv1.SchemeGroupVersion,
		&networkingv1.Ingress{}, &networkingv1.IngressList{},
		&networkingv1.IngressClass{}, &networkingv1.IngressClassList{},
		&networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicyList{},
	)
	add(policyv1.SchemeGroupVersion, &policyv1.PodDisruptionBudget{}, &policyv1.PodDisruptionBudgetList{})
	add(autoscalingv2.SchemeGroupVersion, &autoscalingv2.HorizontalPodAutoscaler{}, &autoscalingv2.HorizontalPodAutoscalerList{})
	add(storagev1.SchemeGroupVersion, &storagev1.StorageClass{}, &storagev1.StorageClassList{})
	add(schedulingv1.SchemeGroupVersion, &schedulingv1.PriorityClass{}, &schedulingv1.PriorityClassList{})
	add(admissionregistrationv1.SchemeGroupVersion,
		&admissionregistrationv1.ValidatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfigurationList{},
		&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.MutatingWebhookConfigurationList{},
		&admissionregistrationv1.ValidatingAdmissionPolicy{}, &admissionregistrationv1.ValidatingAdmissionPolicyList{},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{},
	)
	for _, gv := range []schema.GroupVersion{batchv1.SchemeGroupVersion, networkingv1.SchemeGroupVersion,
		policyv1.SchemeGroupVersion, storagev1.SchemeGroupVersion, schedulingv1.SchemeGroupVersion,
		admissionregistrationv1.SchemeGroupVersion} {
		if err := builtinScheme.SetVersionPriority(gv); err != nil {
			panic(err)
		}
	}
}

func obj[T any, PT interface {
	*T
	runtime.Object
}]() func() runtime.Object {
	return func() runtime.Object { return PT(new(T)) }
}

var (
	storedCore = []storedKind{
		{resource: "pods", singular: "pod", newObj: obj[corev1.Pod](), newList: obj[corev1.PodList](),
			namespaced: true, hasStatus: true, shortNames: []string{"po"}, categories: []string{"all"}},
		{resource: "persistentvolumeclaims", singular: "persistentvolumeclaim", newObj: obj[corev1.PersistentVolumeClaim](), newList: obj[corev1.PersistentVolumeClaimList](),
			namespaced: true, hasStatus: true, shortNames: []string{"pvc"}},
		{resource: "resourcequotas", singular: "resourcequota", newObj: obj[corev1.ResourceQuota](), newList: obj[corev1.ResourceQuotaList](),
			namespaced: true, hasStatus: true, shortNames: []string{"quota"}},
		{resource: "limitranges", singular: "limitrange", newObj: obj[corev1.LimitRange](), newList: obj[corev1.LimitRangeList](),
			namespaced: true, shortNames: []string{"limits"}},
		{resource: "endpoints", singular: "endpoints", newObj: obj[corev1.Endpoints](), newList: obj[corev1.EndpointsList](),
			namespaced: true, shortNames: []string{"ep"}},
	}
	storedApps = []storedKind{
		{resource: "statefulsets", singular: "statefulset", newObj: obj[appsv1.StatefulSet](), newList: obj[appsv1.StatefulSetList](),
			namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"sts"}, categories: []string{"all"}},
		{resource: "daemonsets", singular: "daemonset", newObj: obj[appsv1.DaemonSet](), newList: obj[appsv1.DaemonSetList](),
			namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"ds"}, categories: []string{"all"}},
		{resource: "replicasets", singular: "replicaset", newObj: obj[appsv1.ReplicaSet](), newList: obj[appsv1.ReplicaSetList](),
			namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"rs"}, categories: []string{"all"}},
	}
	storedGroups = []struct {
		gv    schema.GroupVersion
		kinds []storedKind
	}{
		{batchv1.SchemeGroupVersion, []storedKind{
			{resource: "jobs", singular: "job", newObj: obj[batchv1.Job](), newList: obj[batchv1.JobList](),
				namespaced: true, hasStatus: true, bumpGeneration: true, categories: []string{"all"}},
			{resource: "cronjobs", singular: "cronjob", newObj: obj[batchv1.CronJob](), newList: obj[batchv1.CronJobList](),
				namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"cj"}, categories: []string{"all"}},
		}},
		{networkingv1.SchemeGroupVersion, []storedKind{
			{resource: "ingresses", singular: "ingress", newObj: obj[networkingv1.Ingress](), newList: obj[networkingv1.IngressList](),
				namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"ing"}},
			{resource: "ingressclasses", singular: "ingressclass", newObj: obj[networkingv1.IngressClass](), newList: obj[networkingv1.IngressClassList]()},
			{resource: "networkpolicies", singular: "networkpolicy", newObj: obj[networkingv1.NetworkPolicy](), newList: obj[networkingv1.NetworkPolicyList](),
				namespaced: true, bumpGeneration: true, shortNames: []string{"netpol"}},
		}},
		{policyv1.SchemeGroupVersion, []storedKind{
			{resource: "poddisruptionbudgets", singular: "poddisruptionbudget", newObj: obj[policyv1.PodDisruptionBudget](), newList: obj[policyv1.PodDisruptionBudgetList](),
				namespaced: true, hasStatus: true, bumpGeneration: true, shortNames: []string{"pdb"}},
		}},
		{autoscalingv2.SchemeGroupVersion, []storedKind{
			{resource: "horizontalpodautoscalers", singular: "horizontalpodautoscaler", newObj: obj[autoscalingv2.HorizontalPodAutoscaler](), newList: obj[autoscalingv2.HorizontalPodAutoscalerList](),
				namespaced: true, hasStatus: true, shortNames: []string{"hpa"}, categories: []string{"all"}},
		}},
		{storagev1.SchemeGroupVersion, []storedKind{
			{resource: "storageclasses", singular: "storageclass", newObj: obj[storagev1.StorageClass](), newList: obj[storagev1.StorageClassList](),
				shortNames: []string{"sc"}},
		}},
		{schedulingv1.SchemeGroupVersion, []storedKind{
			{resource: "priorityclasses", singular: "priorityclass", newObj: obj[schedulingv1.PriorityClass](), newList: obj[schedulingv1.PriorityClassList](),
				shortNames: []string{"pc"}},
		}},
		{admissionregistrationv1.SchemeGroupVersion, []storedKind{
			{resource: "validatingwebhookconfigurations", singular: "validatingwebhookconfiguration",
				newObj: obj[admissionregistrationv1.ValidatingWebhookConfiguration](), newList: obj[admissionregistrationv1.ValidatingWebhookConfigurationList]()},
			{resource: "mutatingwebhookconfigurations", singular: "mutatingwebhookconfiguration",
				newObj: obj[admissionregistrationv1.MutatingWebhookConfiguration](), newList: obj[admissionregistrationv1.MutatingWebhookConfigurationList]()},
			{resource: "validatingadmissionpolicies", singular: "validatingadmissionpolicy", hasStatus: true, bumpGeneration: true, pathNames: true,
				newObj: obj[admissionregistrationv1.ValidatingAdmissionPolicy](), newList: obj[admissionregistrationv1.ValidatingAdmissionPolicyList]()},
			{resource: "validatingadmissionpolicybindings", singular: "validatingadmissionpolicybinding", bumpGeneration: true, pathNames: true,
				newObj: obj[admissionregistrationv1.ValidatingAdmissionPolicyBinding](), newList: obj[admissionregistrationv1.ValidatingAdmissionPolicyBindingList]()},
		}},
	}
)

// addStored puts the storage of kinds (and their status subresources) into m.
func addStored(getter generic.RESTOptionsGetter, gv schema.GroupVersion, kinds []storedKind, m map[string]rest.Storage) error {
	for _, sk := range kinds {
		st := &strategy{namespaced: sk.namespaced, hasStatus: sk.hasStatus, bumpGeneration: sk.bumpGeneration}
		if sk.pathNames {
			st.nameFn = path.ValidatePathSegmentName
		}
		if sk.hasStatus {
			st.resetFields = resetPaths(gv, []interface{}{"status"})
		}
		r, err := newREST(getter, kind{
			gr: schema.GroupResource{Group: gv.Group, Resource: sk.resource}, singular: sk.singular,
			newObj: sk.newObj, newList: sk.newList, strategy: st,
			shortNames: sk.shortNames, categories: sk.categories,
		})
		if err != nil {
			return err
		}
		m[sk.resource] = r
		if sk.hasStatus {
			m[sk.resource+"/status"] = newStatusREST(r, resetPaths(gv, []interface{}{"spec"}))
		}
	}
	return nil
}

// storedGroupInfos: the API groups that hold only storage-only kinds.
func storedGroupInfos(etcdOpts *genericoptions.EtcdOptions, c *genericapiserver.RecommendedConfig) ([]*genericapiserver.APIGroupInfo, error) {
	var infos []*genericapiserver.APIGroupInfo
	for _, g := range storedGroups {
		m := map[string]rest.Storage{}
		if err := addStored(restOptionsGetter(etcdOpts, c, g.gv), g.gv, g.kinds, m); err != nil {
			return nil, err
		}
		info := genericapiserver.NewDefaultAPIGroupInfo(g.gv.Group, builtinScheme, metav1.ParameterCodec, builtinCodecs)
		info.VersionedResourcesStorageMap[g.gv.Version] = m
		infos = append(infos, &info)
	}
	return infos, nil
}
