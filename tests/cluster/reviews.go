package main

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// --- authorization.k8s.io and authentication.k8s.io reviews -----------------
// The answers come from the same authorizer that guards the requests
// (rbac.go), so `kubectl auth can-i` (also with --as) and `kubectl auth
// whoami` tell the truth.

// reviewAttributes turns a review's spec into the attributes the authorizer sees.
func reviewAttributes(u user.Info, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) authorizer.AttributesRecord {
	a := authorizer.AttributesRecord{User: u}
	if ra != nil {
		a.ResourceRequest = true
		a.Verb, a.Namespace, a.APIGroup, a.APIVersion = ra.Verb, ra.Namespace, ra.Group, ra.Version
		a.Resource, a.Subresource, a.Name = ra.Resource, ra.Subresource, ra.Name
	} else if nra != nil {
		a.Verb, a.Path = nra.Verb, nra.Path
	}
	return a
}

func review(ctx context.Context, authz authorizer.Authorizer, a authorizer.AttributesRecord) authorizationv1.SubjectAccessReviewStatus {
	decision, reason, err := authz.Authorize(ctx, a)
	st := authorizationv1.SubjectAccessReviewStatus{Allowed: decision == authorizer.DecisionAllow, Denied: decision == authorizer.DecisionDeny, Reason: reason}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}

func checkReviewSpec(kind string, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) error {
	if (ra == nil) == (nra == nil) {
		return apierrors.NewBadRequest(fmt.Sprintf("%s: exactly one of resourceAttributes and nonResourceAttributes must be specified", kind))
	}
	return nil
}

type selfSubjectAccessReviewREST struct{ authz authorizer.Authorizer }

func (r *selfSubjectAccessReviewREST) New() runtime.Object {
	return &authorizationv1.SelfSubjectAccessReview{}
}
func (r *selfSubjectAccessReviewREST) Destroy()                {}
func (r *selfSubjectAccessReviewREST) NamespaceScoped() bool   { return false }
func (r *selfSubjectAccessReviewREST) GetSingularName() string { return "selfsubjectaccessreview" }
func (r *selfSubjectAccessReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	rv, ok := obj.(*authorizationv1.SelfSubjectAccessReview)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a SelfSubjectAccessReview: %T", obj))
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewBadRequest("no user present on request")
	}
	if err := checkReviewSpec("SelfSubjectAccessReview", rv.Spec.ResourceAttributes, rv.Spec.NonResourceAttributes); err != nil {
		return nil, err
	}
	rv.Status = review(ctx, r.authz, reviewAttributes(u, rv.Spec.ResourceAttributes, rv.Spec.NonResourceAttributes))
	return rv, nil
}

// subjectAccessReviewREST serves subjectaccessreviews (cluster-scoped) and,
// with namespaced set, localsubjectaccessreviews.
type subjectAccessReviewREST struct {
	authz      authorizer.Authorizer
	namespaced bool
}

func (r *subjectAccessReviewREST) New() runtime.Object {
	if r.namespaced {
		return &authorizationv1.LocalSubjectAccessReview{}
	}
	return &authorizationv1.SubjectAccessReview{}
}
func (r *subjectAccessReviewREST) Destroy()              {}
func (r *subjectAccessReviewREST) NamespaceScoped() bool { return r.namespaced }
func (r *subjectAccessReviewREST) GetSingularName() string {
	if r.namespaced {
		return "localsubjectaccessreview"
	}
	return "subjectaccessreview"
}
func (r *subjectAccessReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	var spec *authorizationv1.SubjectAccessReviewSpec
	var status *authorizationv1.SubjectAccessReviewStatus
	kind := "SubjectAccessReview"
	switch rv := obj.(type) {
	case *authorizationv1.SubjectAccessReview:
		spec, status = &rv.Spec, &rv.Status
	case *authorizationv1.LocalSubjectAccessReview:
		kind = "LocalSubjectAccessReview"
		spec, status = &rv.Spec, &rv.Status
		ns := genericapirequest.NamespaceValue(ctx)
		if spec.ResourceAttributes == nil || spec.ResourceAttributes.Namespace != ns {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("spec.resourceAttributes.namespace must match the namespace of the request (%q)", ns))
		}
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a SubjectAccessReview: %T", obj))
	}
	if spec.User == "" && len(spec.Groups) == 0 {
		return nil, apierrors.NewBadRequest(kind + ": at least one of user or group must be specified")
	}
	if err := checkReviewSpec(kind, spec.ResourceAttributes, spec.NonResourceAttributes); err != nil {
		return nil, err
	}
	u := &user.DefaultInfo{Name: spec.User, UID: spec.UID, Groups: spec.Groups}
	if len(spec.Extra) > 0 {
		u.Extra = map[string][]string{}
		for k, v := range spec.Extra {
			u.Extra[k] = v
		}
	}
	*status = review(ctx, r.authz, reviewAttributes(u, spec.ResourceAttributes, spec.NonResourceAttributes))
	return obj, nil
}

type selfSubjectRulesReviewREST struct{ rules authorizer.RuleResolver }

func (r *selfSubjectRulesReviewREST) New() runtime.Object {
	return &authorizationv1.SelfSubjectRulesReview{}
}
func (r *selfSubjectRulesReviewREST) Destroy()                {}
func (r *selfSubjectRulesReviewREST) NamespaceScoped() bool   { return false }
func (r *selfSubjectRulesReviewREST) GetSingularName() string { return "selfsubjectrulesreview" }
func (r *selfSubjectRulesReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	rv, ok := obj.(*authorizationv1.SelfSubjectRulesReview)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a SelfSubjectRulesReview: %T", obj))
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewBadRequest("no user present on request")
	}
	res, nonRes, incomplete, err := r.rules.RulesFor(ctx, u, rv.Spec.Namespace)
	st := authorizationv1.SubjectRulesReviewStatus{Incomplete: incomplete}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	for _, rule := range res {
		st.ResourceRules = append(st.ResourceRules, authorizationv1.ResourceRule{
			Verbs: rule.GetVerbs(), APIGroups: rule.GetAPIGroups(), Resources: rule.GetResources(), ResourceNames: rule.GetResourceNames()})
	}
	for _, rule := range nonRes {
		st.NonResourceRules = append(st.NonResourceRules, authorizationv1.NonResourceRule{
			Verbs: rule.GetVerbs(), NonResourceURLs: rule.GetNonResourceURLs()})
	}
	rv.Status = st
	return rv, nil
}

type selfSubjectReviewREST struct{}

func (r *selfSubjectReviewREST) New() runtime.Object     { return &authenticationv1.SelfSubjectReview{} }
func (r *selfSubjectReviewREST) Destroy()                {}
func (r *selfSubjectReviewREST) NamespaceScoped() bool   { return false }
func (r *selfSubjectReviewREST) GetSingularName() string { return "selfsubjectreview" }
func (r *selfSubjectReviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewBadRequest("no user present on request")
	}
	review := &authenticationv1.SelfSubjectReview{}
	review.Status.UserInfo = authenticationv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}
	if extra := u.GetExtra(); len(extra) > 0 {
		review.Status.UserInfo.Extra = map[string]authenticationv1.ExtraValue{}
		for k, v := range extra {
			review.Status.UserInfo.Extra[k] = v
		}
	}
	return review, nil
}
