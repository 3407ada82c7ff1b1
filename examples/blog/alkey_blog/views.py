"""The blog's pages: the list, a post, and the form that edits it."""

from __future__ import annotations

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.view import view_config
from sqlalchemy import select

from .models import Post, Session


def _post(request) -> Post:
    post = Session.get(Post, int(request.matchdict['id']))
    if post is None:
        raise HTTPNotFound()
    return post


@view_config(route_name='home', renderer='alkey_blog:templates/home.mako')
def home(request):
    return {'posts': Session.scalars(select(Post).order_by(Post.id)).all(),
            'Post': Post}


@view_config(route_name='post', renderer='alkey_blog:templates/post.mako')
def post(request):
    return {'post': _post(request)}


@view_config(route_name='edit', renderer='alkey_blog:templates/edit.mako')
def edit(request):
    post = _post(request)
    error = None
    if request.method == 'POST':
        title = request.POST.get('title', '').strip()
        body = request.POST.get('body', '').replace('\r\n', '\n').strip()
        if not title:
            error = 'A post needs a title.'
            request.response.status = 400
        else:
            # pyramid_tm commits after the view; alkey then replaces the
            # tokens of this post and of the posts table.
            post.title = title
            post.body = body
            return HTTPSeeOther(request.route_path('post', id=post.id))
    return {'post': post, 'error': error}
