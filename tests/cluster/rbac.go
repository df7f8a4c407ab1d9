package main

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/klog/v2"

	"driftless.dev/cluster/rbacrules"
)

// rbacAuthorizer evaluates the stored Roles, ClusterRoles, RoleBindings and
// ClusterRoleBindings with kube-apiserver's RBAC semantics (written here:
// k8s.io/kubernetes' plugin/pkg/auth/authorizer/rbac is not packaged by
// Debian). It only ever allows: a request no rule allows gets NoOpinion, and
// k8s.io/apiserver's authorization filter answers 403 with kube-apiserver's
// message.
//
//   - members of system:masters may do everything (the admin certificate);
//   - RoleBindings grant their Role's or ClusterRole's rules in their own
//     namespace, ClusterRoleBindings grant a ClusterRole's rules everywhere
//     (non-resource URLs only through ClusterRoleBindings);
//   - subjects: User, Group, ServiceAccount (namespace defaults to the
//     RoleBinding's);
//   - rules: verbs, apiGroups, resources ("*", "pods/log", "*/scale"),
//     resourceNames, nonResourceURLs ("/healthz", "/apis/*"), "*" anywhere;
//   - a ClusterRole with an aggregationRule also has the rules of the
//     ClusterRoles its selectors match (resolved at evaluation time, the
//     stored .rules is not rewritten);
//   - the bootstrap policy kube-apiserver stores as system:discovery,
//     system:basic-user and system:public-info-viewer is built in (not
//     stored): see implicitRules.
//
// The objects are read through informers on the loopback client, as
// kube-apiserver does: a binding takes effect a few milliseconds after it is
// written.
type rbacAuthorizer struct {
	roles               rbaclisters.RoleLister
	roleBindings        rbaclisters.RoleBindingLister
	clusterRoles        rbaclisters.ClusterRoleLister
	clusterRoleBindings rbaclisters.ClusterRoleBindingLister
}

var _ authorizer.Authorizer = &rbacAuthorizer{}
var _ authorizer.RuleResolver = &rbacAuthorizer{}

// implicitRules is the part of kube-apiserver's bootstrap policy every
// cluster has, keyed by the group it is bound to.
var implicitRules = map[string][]rbacv1.PolicyRule{
	// system:public-info-viewer
	user.AllAuthenticated: {
		{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz", "/livez", "/readyz", "/version", "/version/"}},
		// system:discovery
		{Verbs: []string{"get"}, NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*"}},
		// system:basic-user
		{Verbs: []string{"create"}, APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"selfsubjectaccessreviews", "selfsubjectrulesreviews"}},
		{Verbs: []string{"create"}, APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"selfsubjectreviews"}},
	},
	user.AllUnauthenticated: {
		{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz", "/livez", "/readyz", "/version", "/version/"}},
	},
}

func (r *rbacAuthorizer) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	u := a.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, "no user on the request", nil
	}
	if rbacrules.Has(u.GetGroups(), user.SystemPrivilegedGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	allowed := false
	r.visitRules(u, a.GetNamespace(), func(rule *rbacv1.PolicyRule) bool {
		if rbacrules.Allows(a, rule) {
			allowed = true
			return false
		}
		return true
	})
	if allowed {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// RulesFor lists what u may do in namespace (SelfSubjectRulesReview).
func (r *rbacAuthorizer) RulesFor(ctx context.Context, u user.Info, namespace string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	if rbacrules.Has(u.GetGroups(), user.SystemPrivilegedGroup) {
		return []authorizer.ResourceRuleInfo{&authorizer.DefaultResourceRuleInfo{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
			[]authorizer.NonResourceRuleInfo{&authorizer.DefaultNonResourceRuleInfo{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}}, false, nil
	}
	var res []authorizer.ResourceRuleInfo
	var nonRes []authorizer.NonResourceRuleInfo
	r.visitRules(u, namespace, func(rule *rbacv1.PolicyRule) bool {
		if len(rule.Resources) > 0 {
			res = append(res, &authorizer.DefaultResourceRuleInfo{Verbs: rule.Verbs, APIGroups: rule.APIGroups, Resources: rule.Resources, ResourceNames: rule.ResourceNames})
		}
		if len(rule.NonResourceURLs) > 0 {
			nonRes = append(nonRes, &authorizer.DefaultNonResourceRuleInfo{Verbs: rule.Verbs, NonResourceURLs: rule.NonResourceURLs})
		}
		return true
	})
	return res, nonRes, false, nil
}

// visitRules calls visit with every rule that applies to u in namespace
// ("" = cluster scope) until visit returns false.
func (r *rbacAuthorizer) visitRules(u user.Info, namespace string, visit func(*rbacv1.PolicyRule) bool) {
	groups := u.GetGroups()
	for g, rules := range implicitRules {
		if !rbacrules.Has(groups, g) {
			continue
		}
		for i := range rules {
			if !visit(&rules[i]) {
				return
			}
		}
	}
	crbs, err := r.clusterRoleBindings.List(labels.Everything())
	if err != nil {
		klog.Errorf("RBAC: listing clusterrolebindings: %v", err)
	}
	for _, b := range crbs {
		if !rbacrules.AppliesTo(u, b.Subjects, "") {
			continue
		}
		if !r.visitRoleRef(b.RoleRef, "", visit) {
			return
		}
	}
	if namespace == "" {
		return
	}
	rbs, err := r.roleBindings.RoleBindings(namespace).List(labels.Everything())
	if err != nil {
		klog.Errorf("RBAC: listing rolebindings in %s: %v", namespace, err)
	}
	for _, b := range rbs {
		if !rbacrules.AppliesTo(u, b.Subjects, namespace) {
			continue
		}
		if !r.visitRoleRef(b.RoleRef, namespace, visit) {
			return
		}
	}
}

// visitRoleRef visits the rules of the role a binding refers to; false when
// visit asked to stop. A missing role grants nothing.
func (r *rbacAuthorizer) visitRoleRef(ref rbacv1.RoleRef, namespace string, visit func(*rbacv1.PolicyRule) bool) bool {
	if ref.APIGroup != rbacv1.GroupName {
		return true
	}
	switch ref.Kind {
	case "Role":
		if namespace == "" {
			return true
		}
		role, err := r.roles.Roles(namespace).Get(ref.Name)
		if err != nil {
			return true
		}
		return visitAll(role.Rules, visit)
	case "ClusterRole":
		return r.visitClusterRole(ref.Name, visit, map[string]bool{})
	}
	return true
}

func (r *rbacAuthorizer) visitClusterRole(name string, visit func(*rbacv1.PolicyRule) bool, seen map[string]bool) bool {
	if seen[name] {
		return true
	}
	seen[name] = true
	role, err := r.clusterRoles.Get(name)
	if err != nil {
		return true
	}
	if !visitAll(role.Rules, visit) {
		return false
	}
	if role.AggregationRule == nil {
		return true
	}
	all, err := r.clusterRoles.List(labels.Everything())
	if err != nil {
		return true
	}
	for _, sel := range role.AggregationRule.ClusterRoleSelectors {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil || s.Empty() {
			continue
		}
		for _, other := range all {
			if other.Name != name && s.Matches(labels.Set(other.Labels)) {
				if !r.visitClusterRole(other.Name, visit, seen) {
					return false
				}
			}
		}
	}
	return true
}

func visitAll(rules []rbacv1.PolicyRule, visit func(*rbacv1.PolicyRule) bool) bool {
	for i := range rules {
		if !visit(&rules[i]) {
			return false
		}
	}
	return true
}
